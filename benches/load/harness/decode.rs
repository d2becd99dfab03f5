//! What a subscriber counts: the chunked decoder, the SSE line splitter and
//! the tally of sequence numbers, duplicates, order and latency.

/// What one subscriber saw.
pub struct Tally {
    /// Events of the scenario (sequence numbers are 0..n_events).
    pub n_events: u64,
    pub delivered: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    pub dups: u64,
    pub reordered: u64,
    /// Data lines that were not ours, or sequence numbers out of range.
    pub bad: u64,
    pub max_seq: Option<u64>,
    pub seen: Vec<u64>,
    pub lat_us: Vec<u32>,
    pub last_rx: u64,
}

impl Tally {
    pub fn new(n_events: u64) -> Tally {
        Tally {
            n_events,
            delivered: 0,
            unique: 0,
            dups: 0,
            reordered: 0,
            bad: 0,
            max_seq: None,
            seen: Vec::new(),
            lat_us: Vec::new(),
            last_rx: 0,
        }
    }

    /// One SSE line (without its line break).
    pub fn line(&mut self, line: &[u8], now: u64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data: ") else {
            return;
        };
        match parse_u64(data).and_then(|(seq, rest)| Some((seq, parse_u64(rest.strip_prefix(b" ")?)?.0))) {
            Some((seq, sent)) => self.event(seq, sent, now),
            None => self.bad += 1,
        }
    }

    pub fn event(&mut self, seq: u64, sent: u64, now: u64) {
        self.delivered += 1;
        if seq >= self.n_events {
            self.bad += 1;
            return;
        }
        if self.seen.is_empty() {
            self.seen = vec![0; (self.n_events as usize).div_ceil(64)];
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.dups += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        if self.max_seq.is_some_and(|m| seq < m) {
            self.reordered += 1;
        }
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
        self.lat_us
            .push((now.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32);
        self.last_rx = now;
    }
}

pub fn parse_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let v = b[..digits].iter().fold(0u64, |v, c| v * 10 + u64::from(c - b'0'));
    Some((v, &b[digits..]))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    #[default]
    Size,
    Data,
    DataEnd,
}

/// Incremental HTTP/1.1 chunked decoder feeding an SSE line splitter.
#[derive(Default)]
pub struct Decoder {
    pub chunked: bool,
    pub state: ChunkState,
    pub chunk_left: usize,
    pub size_line: Vec<u8>,
    pub line: Vec<u8>,
    /// The terminating zero-size chunk came: the server ended the stream.
    pub ended: bool,
}

impl Decoder {
    pub fn feed(&mut self, mut input: &[u8], tally: &mut Tally, now: u64) -> Result<(), String> {
        if !self.chunked {
            self.body(input, tally, now);
            return Ok(());
        }
        while !input.is_empty() && !self.ended {
            match self.state {
                ChunkState::Size => match memchr(b'\n', input) {
                    Some(i) => {
                        self.size_line.extend_from_slice(&input[..i]);
                        input = &input[i + 1..];
                        let text = String::from_utf8_lossy(&self.size_line);
                        let hex = text.split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad chunk size line {hex:?}"))?;
                        self.size_line.clear();
                        if size == 0 {
                            self.ended = true;
                        } else {
                            self.chunk_left = size;
                            self.state = ChunkState::Data;
                        }
                    }
                    None => {
                        self.size_line.extend_from_slice(input);
                        input = &[];
                    }
                },
                ChunkState::Data => {
                    let n = self.chunk_left.min(input.len());
                    self.body(&input[..n], tally, now);
                    input = &input[n..];
                    self.chunk_left -= n;
                    if self.chunk_left == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => match memchr(b'\n', input) {
                    Some(i) => {
                        input = &input[i + 1..];
                        self.state = ChunkState::Size;
                    }
                    None => input = &[],
                },
            }
        }
        Ok(())
    }

    pub fn body(&mut self, mut data: &[u8], tally: &mut Tally, now: u64) {
        while let Some(i) = memchr(b'\n', data) {
            if self.line.is_empty() {
                tally.line(&data[..i], now);
            } else {
                self.line.extend_from_slice(&data[..i]);
                let line = std::mem::take(&mut self.line);
                tally.line(&line, now);
                self.line = line;
                self.line.clear();
            }
            data = &data[i + 1..];
        }
        self.line.extend_from_slice(data);
    }
}
