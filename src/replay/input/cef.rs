//! CEF input (filled in).

use super::{Item, Parser, Source};

pub(super) struct Cef;

impl Cef {
    pub(super) fn new(_src: Source) -> Self {
        Cef
    }
}

impl Parser for Cef {
    fn next_item(&mut self) -> Option<Result<Item, (Option<u64>, String)>> {
        None
    }
}
