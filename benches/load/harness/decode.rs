//! What a subscriber counts: the chunked decoder, the SSE line splitter and
//! the tally of sequence numbers, duplicates, order and latency.

/// How a subscriber checks and records what it gets.
#[derive(Clone, Copy)]
pub struct Checks {
    /// Events of the scenario (sequence numbers are 0..n_events).
    pub n_events: u64,
    /// Sequence numbers in one lane (`seq / lane`) are published in order;
    /// lanes are independent (concurrent publishers). `n_events`: one lane.
    pub lane: u64,
    /// Keep each event's latency (4 bytes per delivery: off for the
    /// scenarios with hundreds of millions of deliveries).
    pub latency: bool,
}

impl Checks {
    pub fn new(n_events: u64) -> Checks {
        Checks {
            n_events,
            lane: n_events.max(1),
            latency: true,
        }
    }
}

/// What one subscriber saw.
pub struct Tally {
    pub checks: Checks,
    pub delivered: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    pub dups: u64,
    /// Events older than one already received in the same lane.
    pub reordered: u64,
    /// `id:` lines not after the previous one (ids must strictly increase).
    pub id_disorder: u64,
    /// Data lines that were not ours, or sequence numbers out of range.
    pub bad: u64,
    /// Highest sequence number per lane, plus one (0: none yet).
    pub lane_max: Vec<u64>,
    pub seen: Vec<u64>,
    /// The last `id:` value.
    pub last_id: Vec<u8>,
    pub lat_us: Vec<u32>,
    pub last_rx: u64,
}

impl Tally {
    pub fn new(checks: Checks) -> Tally {
        Tally {
            checks,
            delivered: 0,
            unique: 0,
            dups: 0,
            reordered: 0,
            id_disorder: 0,
            bad: 0,
            lane_max: Vec::new(),
            seen: Vec::new(),
            last_id: Vec::new(),
            lat_us: Vec::new(),
            last_rx: 0,
        }
    }

    /// One SSE line (without its line break).
    pub fn line(&mut self, line: &[u8], now: u64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data: ") else {
            if let Some(id) = line.strip_prefix(b"id: ") {
                self.id(id);
            }
            return;
        };
        match parse_u64(data).and_then(|(seq, rest)| Some((seq, parse_u64(rest.strip_prefix(b" ")?)?.0))) {
            Some((seq, sent)) => self.event(seq, sent, now),
            None => self.bad += 1,
        }
    }

    /// Ids are opaque but of equal width today; compare by length, then
    /// bytes, so a longer id is a later one either way.
    fn id(&mut self, id: &[u8]) {
        let later = (id.len(), id) > (self.last_id.len(), &self.last_id[..]);
        if !later {
            self.id_disorder += 1;
        }
        self.last_id.clear();
        self.last_id.extend_from_slice(id);
    }

    pub fn event(&mut self, seq: u64, sent: u64, now: u64) {
        self.delivered += 1;
        let c = self.checks;
        if seq >= c.n_events {
            self.bad += 1;
            return;
        }
        if self.seen.is_empty() {
            self.seen = vec![0; (c.n_events as usize).div_ceil(64)];
            self.lane_max = vec![0; c.n_events.div_ceil(c.lane) as usize];
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.dups += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        let lane = &mut self.lane_max[(seq / c.lane) as usize];
        if seq + 1 < *lane {
            self.reordered += 1;
        }
        *lane = (*lane).max(seq + 1);
        if c.latency {
            self.lat_us
                .push((now.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32);
        }
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
    // Eight bytes at a time (the decoder reads gigabytes in `stalled`).
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(b);
    let mut i = 0;
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes")) ^ pattern;
        let z = w.wrapping_sub(LO) & !w & HI;
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..].iter().position(|&c| c == b).map(|p| p + i)
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
