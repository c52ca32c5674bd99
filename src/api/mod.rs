//! The Code42 API client, both generations (stub).
