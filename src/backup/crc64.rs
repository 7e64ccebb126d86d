//! CRC-64/Jones as Redis computes it (`src/crc64.c`): reflected, initial
//! value 0, no final xor. It closes every RDB file and every `DUMP` payload.
//!
//! Slice-by-8: a snapshot is checked as fast as it arrives over loopback.

/// The Jones polynomial 0xad93d23594c935a9, bit-reversed for the reflected form.
const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

const TABLES: [[u64; 256]; 8] = tables();

const fn tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// A running CRC-64/Jones.
#[derive(Debug, Clone, Copy, Default)]
pub struct Crc64 {
    crc: u64,
}

impl Crc64 {
    pub fn new() -> Self {
        Crc64 { crc: 0 }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let mut crc = self.crc;
        while data.len() >= 8 {
            let word = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) ^ crc;
            crc = TABLES[7][(word & 0xff) as usize]
                ^ TABLES[6][((word >> 8) & 0xff) as usize]
                ^ TABLES[5][((word >> 16) & 0xff) as usize]
                ^ TABLES[4][((word >> 24) & 0xff) as usize]
                ^ TABLES[3][((word >> 32) & 0xff) as usize]
                ^ TABLES[2][((word >> 40) & 0xff) as usize]
                ^ TABLES[1][((word >> 48) & 0xff) as usize]
                ^ TABLES[0][(word >> 56) as usize];
            data = &data[8..];
        }
        for &b in data {
            crc = TABLES[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
        }
        self.crc = crc;
    }

    pub fn value(&self) -> u64 {
        self.crc
    }
}

/// The CRC of `data` in one call.
pub fn crc64(data: &[u8]) -> u64 {
    let mut c = Crc64::new();
    c.update(data);
    c.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_redis_test_vector() {
        // redis src/crc64.c: crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9ca.
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    /// Bit by bit, straight from the definition, to check the tables against.
    fn reference(data: &[u8]) -> u64 {
        let mut crc = 0u64;
        for &b in data {
            crc ^= b as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn slice_by_8_equals_the_bitwise_definition() {
        let data: Vec<u8> = (0..4099u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 4099] {
            assert_eq!(crc64(&data[..len]), reference(&data[..len]), "length {len}");
        }
    }

    #[test]
    fn chunked_updates_equal_one_update() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = crc64(&data);
        for split in [1, 7, 8, 9, 4095, 9999] {
            let mut c = Crc64::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.value(), whole, "split at {split}");
        }
    }
}
