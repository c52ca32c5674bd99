//! RELP's window, pure bookkeeping: the batches taken from the delivery loop and not
//! yet acknowledged, the frames sent and not answered (at most `window`), the answers
//! that complete batches in order, and the rewind after a broken session (what was
//! sent and not answered goes out again on the next one).
//!
//! Not here: the wire (`frame.rs`, `session.rs`) and resolving tokens or counting
//! (the transport, `relp/mod.rs`).

use super::frame::{parse_response, Frame};
use crate::ack::AckToken;
use crate::sinks::delivery::EncodedBatch;
use crate::sinks::error::SinkError;
use std::collections::VecDeque;
use tokio::time::Instant;

/// One batch taken from the queue and not yet acknowledged.
pub(super) struct InFlight {
    /// The batch's token, once the delivery loop handed it over ([`Window::hold`]).
    pub(super) ack: Option<AckToken>,
    pub(super) records: EncodedBatch,
    /// Records `..sent` went out on the current session (or were answered before).
    sent: usize,
    /// Records `..answered` got `200 OK`.
    answered: usize,
}

/// The frames sent and not answered, in sending order, and the batches they belong to.
/// Invariant: the unanswered frames are exactly, in order, the records
/// `answered..sent` of each batch in turn.
#[derive(Default)]
pub(super) struct Window {
    batches: VecDeque<InFlight>,
    /// Transaction number and sending time of each unanswered frame.
    unanswered: VecDeque<(u32, Instant)>,
    /// The newest batch still waits for its token ([`Window::hold`]).
    awaiting_token: bool,
}

impl Window {
    /// Takes a batch written by the delivery loop (a copy of its records); its token
    /// comes with [`Window::hold`].
    pub(super) fn push(&mut self, records: EncodedBatch) {
        self.batches.push_back(InFlight {
            ack: None,
            records,
            sent: 0,
            answered: 0,
        });
        self.awaiting_token = true;
    }

    /// The token of the batch [`Window::push`] took last: kept until every frame of it
    /// is answered. Returned when there is nothing to keep it for (the batch was
    /// answered whole already, and every batch before it): resolve it now.
    pub(super) fn hold(&mut self, ack: AckToken) -> Option<AckToken> {
        let awaiting = std::mem::take(&mut self.awaiting_token);
        match self.batches.back_mut() {
            Some(b) if awaiting && b.ack.is_none() => {
                b.ack = Some(ack);
                None
            }
            _ => Some(ack),
        }
    }

    /// Whether a batch is in flight (its token is held or about to be).
    pub(super) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Frames sent and not answered yet.
    pub(super) fn unanswered(&self) -> usize {
        self.unanswered.len()
    }

    /// The oldest unanswered frame: its transaction number and when it was sent.
    pub(super) fn oldest(&self) -> Option<(u32, Instant)> {
        self.unanswered.front().copied()
    }

    /// Marks the next unsent record as sent in frame `txnr` at `now`; returns it.
    pub(super) fn send_next(&mut self, txnr: u32, now: Instant) -> Option<&[u8]> {
        let (bi, ri) = self.next_unsent()?;
        self.unanswered.push_back((txnr, now));
        let b = &mut self.batches[bi];
        b.sent += 1;
        Some(b.records.record(ri))
    }

    /// The next record to send: (batch index, record index).
    fn next_unsent(&self) -> Option<(usize, usize)> {
        self.batches
            .iter()
            .position(|b| b.sent < b.records.len())
            .map(|i| (i, self.batches[i].sent))
    }

    pub(super) fn all_sent(&self) -> bool {
        self.batches.iter().all(|b| b.sent == b.records.len())
    }

    /// Records the `200 OK` for the oldest unanswered frame; returns the batches that
    /// are now complete, in order, for the caller to acknowledge.
    fn answer_oldest(&mut self) -> Vec<InFlight> {
        self.unanswered.pop_front();
        if let Some(b) = self.batches.iter_mut().find(|b| b.answered < b.sent) {
            b.answered += 1;
        }
        self.take_complete()
    }

    /// Batches at the front that every frame of which was answered (also empty ones).
    pub(super) fn take_complete(&mut self) -> Vec<InFlight> {
        let mut done = Vec::new();
        while self
            .batches
            .front()
            .is_some_and(|b| b.answered == b.records.len())
        {
            done.extend(self.batches.pop_front());
        }
        done
    }

    /// Handles one frame from the server while frames are in flight: an `rsp` must
    /// answer the oldest unanswered frame (librelp answers in order; anything else
    /// means we lost track of what was acknowledged) with 200. Returns the batches that
    /// are complete now, in order, for the caller to acknowledge.
    pub(super) fn answer(
        &mut self,
        frame: &Frame<'_>,
        addr: &str,
    ) -> Result<Vec<InFlight>, SinkError> {
        let broken = |reason: String| SinkError::Relp {
            addr: addr.to_string(),
            reason,
        };
        match frame.command {
            "rsp" => {
                let Some(&(expected, _)) = self.unanswered.front() else {
                    return Err(broken(format!(
                        "an rsp to frame {} that was not sent",
                        frame.txnr
                    )));
                };
                if frame.txnr != expected {
                    return Err(broken(format!(
                        "an rsp to frame {} while frame {expected} is the oldest unanswered",
                        frame.txnr
                    )));
                }
                let rsp = parse_response(frame.data).map_err(broken)?;
                if rsp.code != 200 {
                    return Err(SinkError::RelpRefused {
                        addr: addr.to_string(),
                        command: format!("syslog frame {}", frame.txnr),
                        code: rsp.code,
                        text: rsp.text,
                    });
                }
                Ok(self.answer_oldest())
            }
            "serverclose" => Err(broken("the server closed the session (serverclose)".into())),
            other => Err(broken(format!(
                "unexpected command `{other}` (frame {}) from the server",
                frame.txnr
            ))),
        }
    }

    /// A session ended: what was sent and not answered goes out again on the next one.
    /// Returns how many frames that is.
    pub(super) fn rewind(&mut self) -> usize {
        self.unanswered.clear();
        let mut n = 0;
        for b in &mut self.batches {
            n += b.sent - b.answered;
            b.sent = b.answered;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(n: usize) -> InFlight {
        let mut records = EncodedBatch::default();
        for i in 0..n {
            records.push_record(format!("r{i}").as_bytes());
        }
        InFlight {
            ack: None,
            records,
            sent: 0,
            answered: 0,
        }
    }

    /// Marks the next unsent record as sent with `txnr`.
    fn send(w: &mut Window, txnr: u32) -> (usize, usize) {
        let (bi, ri) = w.next_unsent().expect("something to send");
        w.batches[bi].sent += 1;
        w.unanswered.push_back((txnr, Instant::now()));
        (bi, ri)
    }

    #[test]
    fn window_completes_batches_in_order_and_rewinds_what_was_unanswered() {
        let mut w = Window::default();
        w.batches.push_back(in_flight(2));
        w.batches.push_back(in_flight(0));
        w.batches.push_back(in_flight(3));
        assert_eq!(send(&mut w, 1), (0, 0));
        assert_eq!(send(&mut w, 2), (0, 1));
        assert_eq!(send(&mut w, 3), (2, 0));
        assert!(w.answer_oldest().is_empty());
        // The second answer completes batch 0 and the empty batch behind it.
        assert_eq!(w.answer_oldest().len(), 2);
        assert_eq!(w.batches.len(), 1);
        // The session breaks with frame 3 unanswered: it is sent again, first.
        assert_eq!(w.rewind(), 1);
        assert!(w.unanswered.is_empty());
        assert_eq!(w.next_unsent(), Some((0, 0)));
        for t in 10..13 {
            send(&mut w, t);
        }
        assert!(w.all_sent());
        assert!(w.answer_oldest().is_empty());
        assert!(w.answer_oldest().is_empty());
        assert_eq!(w.answer_oldest().len(), 1);
        assert!(w.batches.is_empty());
    }

    #[test]
    fn a_token_waits_for_its_batch_and_one_for_a_batch_answered_already_comes_back() {
        use crate::ack::{ack_set, Outcome};
        let mut w = Window::default();
        w.push(in_flight(1).records);
        let (mut tokens, mut waiter) = ack_set(1);
        assert!(w.hold(tokens.pop().expect("token")).is_none(), "kept");
        assert!(w.send_next(7, Instant::now()).is_some());
        assert_eq!(w.oldest().map(|(t, _)| t), Some(7));
        assert_eq!(waiter.try_outcome(), None);
        let frame = Frame {
            txnr: 7,
            command: "rsp",
            data: b"200 OK",
        };
        let mut done = w.answer(&frame, "h:1").expect("the oldest, 200");
        assert_eq!(done.len(), 1);
        done[0].ack.take().expect("held").delivered();
        assert_eq!(waiter.try_outcome(), Some(Outcome::Delivered));
        // A batch answered whole before its token came: the token is handed back.
        w.push(in_flight(1).records);
        assert!(w.send_next(8, Instant::now()).is_some());
        let frame = Frame { txnr: 8, ..frame };
        assert_eq!(w.answer(&frame, "h:1").expect("200").len(), 1);
        let (mut tokens, _waiter) = ack_set(1);
        assert!(w.hold(tokens.pop().expect("token")).is_some());
        // A second token for the same batch is not kept either.
        w.push(in_flight(1).records);
        let (mut tokens, _w) = ack_set(2);
        assert!(w.hold(tokens.pop().expect("token")).is_none());
        assert!(w.hold(tokens.pop().expect("token")).is_some());
    }

    #[test]
    fn answers_out_of_order_refused_or_unexpected_break_the_session() {
        let mut w = Window::default();
        w.push(in_flight(2).records);
        w.send_next(1, Instant::now());
        w.send_next(2, Instant::now());
        let rsp = |txnr, data: &'static [u8]| Frame {
            txnr,
            command: "rsp",
            data,
        };
        let e = w
            .answer(&rsp(2, b"200 OK"), "h:1")
            .err()
            .expect("out of order");
        assert!(
            e.to_string().contains("frame 1 is the oldest unanswered"),
            "{e}"
        );
        let e = w
            .answer(&rsp(1, b"500 full"), "h:1")
            .err()
            .expect("refused");
        assert_eq!(e.kind(), "relp_refused");
        let close = Frame {
            txnr: 0,
            command: "serverclose",
            data: b"",
        };
        let e = w.answer(&close, "h:1").err().expect("serverclose");
        assert!(e.to_string().contains("serverclose"), "{e}");
    }
}
