//! Sources: pollers of the Code42 API (stub).
