//! RELP frames, pure: encoding and parsing `TXNR SP COMMAND SP DATALEN [SP DATA] LF`,
//! transaction numbers (wrapping as librelp's do), and the data of an `rsp` (code,
//! text, the offers of an `open` answer). No I/O; `session.rs` reads and writes them.

/// The largest transaction number; the next one is 1 again.
pub(crate) const MAX_TXNR: u32 = 999_999_999;

/// The transaction number after `txnr`, wrapping as librelp does.
pub(crate) fn next_txnr(txnr: u32) -> u32 {
    if txnr >= MAX_TXNR {
        1
    } else {
        txnr + 1
    }
}

/// Largest `DATALEN` accepted from a server: an `rsp` is a few hundred bytes; a length
/// beyond this means we are not talking to a RELP server (or lost sync with it).
const MAX_INCOMING_DATALEN: usize = 1 << 20;

/// The longest command name librelp knows is `serverclose`; 32 leaves room.
const MAX_COMMAND_LEN: usize = 32;

/// One frame, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub txnr: u32,
    pub command: &'a str,
    pub data: &'a [u8],
}

/// Appends `TXNR SP COMMAND SP DATALEN [SP DATA] LF` to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(txnr).as_bytes());
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    out.extend_from_slice(n.format(data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// Parses the first frame in `buf`: `Ok(None)` when `buf` holds only part of one,
/// `Ok(Some((frame, bytes used)))`, or an error saying what is wrong (no resync is
/// attempted: the session is broken).
pub(crate) fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, String> {
    let mut pos = 0;
    let Some(txnr) = number_field(buf, &mut pos, 9, "transaction number")? else {
        return Ok(None);
    };
    if txnr > MAX_TXNR as usize {
        return Err(format!("transaction number {txnr} is out of range"));
    }
    // COMMAND SP
    let start = pos;
    loop {
        match buf.get(pos) {
            None if pos - start > MAX_COMMAND_LEN => break,
            None => return Ok(None),
            Some(b' ') => break,
            Some(b) if b.is_ascii_alphabetic() => pos += 1,
            Some(&b) => {
                return Err(format!(
                    "unexpected byte 0x{b:02x} in the command of frame {txnr}"
                ))
            }
        }
    }
    if pos == start || pos - start > MAX_COMMAND_LEN {
        return Err(format!("frame {txnr} has no valid command"));
    }
    let command = std::str::from_utf8(&buf[start..pos]).map_err(|e| e.to_string())?;
    pos += 1;
    // DATALEN, then LF (no data) or SP DATA LF.
    let len_start = pos;
    let datalen = loop {
        match buf.get(pos) {
            None if pos - len_start > 9 => {
                return Err(format!("the data length of frame {txnr} is too long"))
            }
            None => return Ok(None),
            Some(b) if b.is_ascii_digit() => pos += 1,
            Some(b' ' | b'\n') if pos > len_start => {
                break std::str::from_utf8(&buf[len_start..pos])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or_else(|| format!("bad data length in frame {txnr}"))?
            }
            Some(&b) => {
                return Err(format!(
                    "unexpected byte 0x{b:02x} in the data length of frame {txnr}"
                ))
            }
        }
    };
    if datalen > MAX_INCOMING_DATALEN {
        return Err(format!(
            "frame {txnr} announces {datalen} bytes of data, more than a relp server sends"
        ));
    }
    if datalen == 0 {
        // librelp writes `0 serverclose 0\n`; tolerate `... 0 \n` as well.
        if buf[pos] == b' ' {
            match buf.get(pos + 1) {
                None => return Ok(None),
                Some(b'\n') => pos += 1,
                Some(_) => return Err(format!("frame {txnr} has data but a data length of 0")),
            }
        }
        return Ok(Some((
            Frame {
                txnr: txnr as u32,
                command,
                data: &[],
            },
            pos + 1,
        )));
    }
    if buf[pos] != b' ' {
        return Err(format!(
            "frame {txnr}: no data after a data length of {datalen}"
        ));
    }
    let data_start = pos + 1;
    let end = data_start + datalen;
    match buf.get(end) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            Frame {
                txnr: txnr as u32,
                command,
                data: &buf[data_start..end],
            },
            end + 1,
        ))),
        Some(&b) => Err(format!(
            "frame {txnr} does not end with LF after {datalen} bytes of data (found 0x{b:02x})"
        )),
    }
}

/// Reads `digits SP` at `pos`: `Ok(None)` if the buffer ends first.
fn number_field(
    buf: &[u8],
    pos: &mut usize,
    max_digits: usize,
    what: &str,
) -> Result<Option<usize>, String> {
    let start = *pos;
    loop {
        match buf.get(*pos) {
            None if *pos - start > max_digits => return Err(format!("the {what} is too long")),
            None => return Ok(None),
            Some(b) if b.is_ascii_digit() => *pos += 1,
            Some(b' ') if *pos > start && *pos - start <= max_digits => {
                let n = std::str::from_utf8(&buf[start..*pos])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad {what}"))?;
                *pos += 1;
                return Ok(Some(n));
            }
            Some(&b) => {
                return Err(format!(
                    "unexpected byte 0x{b:02x} where the {what} should be: is this a relp server?"
                ))
            }
        }
    }
}

/// The data of an `rsp`: `CODE [SP TEXT] [LF OFFERS]`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response<'a> {
    pub code: u16,
    pub text: String,
    /// What follows the first line (the server's offers, in an `open` answer).
    pub rest: &'a [u8],
}

pub(crate) fn parse_response(data: &[u8]) -> Result<Response<'_>, String> {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let code = line
        .get(..3)
        .filter(|c| c.iter().all(u8::is_ascii_digit))
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "an rsp without a status code: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )
        })?;
    let text = String::from_utf8_lossy(line.get(3..).unwrap_or_default())
        .trim()
        .to_string();
    Ok(Response { code, text, rest })
}

/// The commands a server offers in its `open` answer (`commands=syslog,...`).
pub(super) fn offered_commands(offers: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(offers)
        .lines()
        .filter_map(|l| l.strip_prefix("commands="))
        .flat_map(|c| c.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// What we offer in `open`.
pub(super) fn open_offers() -> String {
    format!(
        "relp_version=0\nrelp_software=c42fwd,{}\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::delivery::EncodedBatch;

    #[cfg(test)]
    fn frames_of(records: &EncodedBatch, first_txnr: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut t = first_txnr;
        for r in records.records() {
            encode_frame(&mut out, t, "syslog", r);
            t = next_txnr(t);
        }
        out
    }

    #[test]
    fn frames_encode_as_librelp_writes_them() {
        let mut out = Vec::new();
        encode_frame(&mut out, 1, "open", b"relp_version=0");
        encode_frame(&mut out, 2, "syslog", b"<13>hello\nworld");
        encode_frame(&mut out, 3, "close", b"");
        assert_eq!(
            out,
            b"1 open 14 relp_version=0\n2 syslog 15 <13>hello\nworld\n3 close 0\n"
        );
    }

    #[test]
    fn frames_parse_whole_partial_and_back_to_back() {
        let wire = b"2 rsp 6 200 OK\n0 serverclose 0\n1 rsp 22 200 OK\ncommands=syslog\n";
        let (f, n) = parse_frame(wire).unwrap().unwrap();
        assert_eq!(
            f,
            Frame {
                txnr: 2,
                command: "rsp",
                data: b"200 OK"
            }
        );
        let (f, m) = parse_frame(&wire[n..]).unwrap().unwrap();
        assert_eq!((f.txnr, f.command, f.data), (0, "serverclose", &b""[..]));
        let (f, k) = parse_frame(&wire[n + m..]).unwrap().unwrap();
        assert_eq!(f.data, b"200 OK\ncommands=syslog");
        assert_eq!(n + m + k, wire.len());
        // Every proper prefix is incomplete, never an error.
        for cut in 0..n {
            assert_eq!(parse_frame(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        for bad in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"\x15\x03\x03\x00\x02\x02\x28",
            b"1 rsp 6 200 OKX",
            b"1 r$p 6 200 OK\n",
            b"12345678901 rsp 0\n",
            b"1 rsp 99999999 x",
        ] {
            assert!(
                parse_frame(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn transaction_numbers_wrap_like_librelp() {
        assert_eq!(next_txnr(1), 2);
        assert_eq!(next_txnr(MAX_TXNR - 1), MAX_TXNR);
        assert_eq!(next_txnr(MAX_TXNR), 1);
        let mut b = EncodedBatch::default();
        b.push_record(b"a");
        b.push_record(b"b");
        assert_eq!(
            frames_of(&b, MAX_TXNR),
            b"999999999 syslog 1 a\n1 syslog 1 b\n"
        );
    }

    #[test]
    fn responses_carry_code_text_and_offers() {
        let r = parse_response(b"200 OK\nrelp_version=0\ncommands=syslog,foo\n").unwrap();
        assert_eq!((r.code, r.text.as_str()), (200, "OK"));
        assert_eq!(offered_commands(r.rest), vec!["syslog", "foo"]);
        let r = parse_response(b"500 command not supported").unwrap();
        assert_eq!((r.code, r.text.as_str()), (500, "command not supported"));
        assert!(parse_response(b"OK").is_err());
    }
}
