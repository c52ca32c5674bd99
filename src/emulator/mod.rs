//! An emulated Code42 tenant (stub).
