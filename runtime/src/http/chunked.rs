//! A chunked body, forwarded as `relay_read_httpchunks` forwards it: re-framed line by line.
//!
//! The relay feeds [`ChunkedDecoder::step`] the unconsumed input and gets back what to
//! write: a chunk-size line is re-emitted as the line (up to a NUL, as `%s` prints it) plus
//! CRLF, chunk data passes verbatim, the line ending a chunk's data is replaced by CRLF
//! whatever it held, empty lines where a size is expected are dropped, trailer lines are
//! re-emitted with CRLF, and the empty line after them ends the body.
//!
//! The size line must be a plain hexadecimal number as `strtoll(line, &ep, 16)` reads it to
//! the end of the line: no `+`, `-`, `0x`/`0X` at its start, no chunk extension, no trailing
//! blank, not negative and no overflow; anything else closes the session with
//! `invalid chunk size`. Leading zeros beyond 16 digits pass. relayd also lets leading
//! blanks pass, and a sign or `0x` after them (`strtoll` skips them), and forwards the line
//! as sent: a recipient reading RFC 9112 7.1's `1*HEXDIG` finds no size there, or another
//! one, so the size must start with a hex digit here.
//!
//! relayd re-emits trailer lines without looking at them. A recipient that takes no
//! trailers ends the body at the last chunk and reads them as the next message, so here
//! each must be a field line as a head's are (RFC 9112 7.1.2, 5): a token name, a colon, no
//! obs-fold, no NUL or bare CR; all of them together no longer than the line limit. A bad
//! one closes the session with `malformed trailer`, before it is written.
//!
//! Where relayd depends on how the bytes arrived (its reads), the decoder takes the reading
//! where they arrived together: it waits for the whole line after a chunk's data (relayd
//! emits the CRLF at once if that line is not there yet and would then judge a late,
//! non-empty line as a size). relay_http.c 1.104 buffers a size line without limit;
//! relayd's logs contract has `chunk size too long` for an unterminated 64 KiB one, so any
//! line the decoder waits for (size, end of data, trailer) longer than the limit
//! ([`CHUNK_LINE_MAX`] by default) fails so, whether or not its LF has arrived.

use super::cstr::{cstr, header_name_valid, partial_len, readln, strtoll};
use std::fmt;

/// The longest line, without its end, the decoder waits for.
pub const CHUNK_LINE_MAX: usize = 64 * 1024;

/// Why relayd closes a session in a chunked body (`relay_close(con, msg, 1)`, an error
/// close: no error page is sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// `invalid chunk size`.
    InvalidSize,
    /// `chunk size too long`; also trailers longer than the line limit together.
    LineTooLong,
    /// `malformed trailer`: a trailer line that is no field line.
    Trailer,
}

impl ChunkError {
    /// The close message.
    pub fn msg(self) -> &'static str {
        match self {
            ChunkError::InvalidSize => "invalid chunk size",
            ChunkError::LineTooLong => "chunk size too long",
            ChunkError::Trailer => "malformed trailer",
        }
    }
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg())
    }
}

impl std::error::Error for ChunkError {}

/// One forwarding step: write `input[..copy]`, then CRLF if `crlf`, then drop `consume`
/// bytes of input. With `done` the body is over and the input after `consume` belongs to
/// the next message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub consume: usize,
    pub copy: usize,
    pub crlf: bool,
    pub done: bool,
}

/// What [`ChunkedDecoder::feed`] did with a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes used; the rest must be offered again (with more) or, once `done`, is the
    /// next message.
    pub consumed: usize,
    pub done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `TOREAD_HTTP_CHUNK_LENGTH`.
    Size,
    /// Chunk data still to pass.
    Data(u64),
    /// `toread == 0`: the line after the data.
    DataEnd,
    /// `TOREAD_HTTP_CHUNK_TRAILER`.
    Trailer,
    Done,
}

/// The state of one chunked body: a few words, no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    max_line: usize,
    /// Bytes at the start of the input known to hold no LF (the awaited line so far).
    scanned: usize,
    /// The trailer lines' lengths so far, without their ends.
    trailers: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder::with_line_limit(CHUNK_LINE_MAX)
    }

    /// A decoder refusing lines longer than `max_line` bytes (without their end).
    pub fn with_line_limit(max_line: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            max_line,
            scanned: 0,
            trailers: 0,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next step over `input`, the unconsumed bytes (which must start where the last
    /// step's `consume` left off); `None` when more input is needed or the body is done.
    pub fn step(&mut self, input: &[u8]) -> Result<Option<Step>, ChunkError> {
        match self.state {
            State::Done => Ok(None),
            State::Data(left) => {
                if input.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(left).map_or(input.len(), |l| l.min(input.len()));
                let rest = left - n as u64;
                self.state = if rest == 0 {
                    State::DataEnd
                } else {
                    State::Data(rest)
                };
                Ok(Some(Step {
                    consume: n,
                    copy: n,
                    crlf: false,
                    done: false,
                }))
            }
            State::Size | State::DataEnd | State::Trailer => {
                let from = self.scanned.min(input.len());
                // Trailer lines share one budget, and a line only grows until its LF.
                let max = match self.state {
                    State::Trailer => self.max_line.saturating_sub(self.trailers),
                    _ => self.max_line,
                };
                let Some((line, used)) = readln(input, from) else {
                    self.scanned = input.len();
                    if partial_len(input) > max {
                        return Err(ChunkError::LineTooLong);
                    }
                    return Ok(None);
                };
                self.scanned = 0;
                if line.len() > max {
                    return Err(ChunkError::LineTooLong);
                }
                let mut step = Step {
                    consume: used,
                    copy: 0,
                    crlf: true,
                    done: false,
                };
                match self.state {
                    State::Size if line.is_empty() => step.crlf = false,
                    State::Size => {
                        let size = chunk_size(line)?;
                        step.copy = cstr(line).len();
                        self.state = if size == 0 {
                            State::Trailer
                        } else {
                            State::Data(size)
                        };
                    }
                    State::DataEnd => self.state = State::Size,
                    _ if line.is_empty() => {
                        step.done = true;
                        self.state = State::Done;
                    }
                    _ => {
                        if !field_line(line) {
                            return Err(ChunkError::Trailer);
                        }
                        self.trailers += line.len();
                        step.copy = line.len();
                    }
                }
                Ok(Some(step))
            }
        }
    }

    /// Runs [`step`](ChunkedDecoder::step) over `input` until it needs more or the body
    /// ends, appending what relayd would write to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Fed, ChunkError> {
        let mut pos = 0;
        while let Some(step) = self.step(input.get(pos..).unwrap_or(&[]))? {
            out.extend_from_slice(input.get(pos..pos + step.copy).unwrap_or(&[]));
            if step.crlf {
                out.extend_from_slice(b"\r\n");
            }
            pos += step.consume;
            if step.done {
                return Ok(Fed {
                    consumed: pos,
                    done: true,
                });
            }
        }
        Ok(Fed {
            consumed: pos,
            done: false,
        })
    }
}

/// A trailer line (without its end) as a head's field line must be: no obs-fold, no NUL, no
/// bare CR, a non-empty token name, a colon.
fn field_line(line: &[u8]) -> bool {
    if matches!(line.first(), Some(b' ' | b'\t')) || memchr::memchr2(0, b'\r', line).is_some() {
        return false;
    }
    match memchr::memchr(b':', line) {
        Some(colon) => {
            let name = line.get(..colon).unwrap_or(&[]);
            !name.is_empty() && header_name_valid(name)
        }
        None => false,
    }
}

/// `relay_read_httpchunks`' size check (`TOREAD_HTTP_CHUNK_LENGTH`), and a hex digit first.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let s = cstr(line);
    if !s.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(ChunkError::InvalidSize);
    }
    // Reject values like 0xdead and 0XBEEF or +FEED (only at the very start).
    if matches!(s.first(), Some(b'+' | b'-'))
        || (s.first() == Some(&b'0') && matches!(s.get(1), Some(b'x' | b'X')))
    {
        return Err(ChunkError::InvalidSize);
    }
    let (value, end, range) = strtoll(s, 16);
    if end == 0 || end != s.len() || value < 0 || (range && value == i64::MAX) {
        return Err(ChunkError::InvalidSize);
    }
    Ok(value.unsigned_abs())
}
