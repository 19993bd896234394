//! Tones for tests and the CLI: Opus-encoded sine waves, and the dominant frequency of
//! decoded audio (Goertzel). Needs libopus (feature `tone`).

/// An Opus error, as text.
pub type ToneError = String;

/// Samples per 20 ms frame at 48 kHz.
pub const FRAME: usize = 960;

/// An Opus encoder of a sine wave, frame by frame.
pub struct ToneEncoder {
    enc: opus::Encoder,
    hz: f64,
    amplitude: f64,
    n: u64,
}

impl ToneEncoder {
    /// A `hz` tone, 48 kHz mono.
    pub fn new(hz: f64) -> Result<Self, ToneError> {
        let enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)
            .map_err(|e| e.to_string())?;
        Ok(Self { enc, hz, amplitude: 12_000.0, n: 0 })
    }

    /// A `hz` tone at `dbov` below full scale (RMS; 0 is the loudest).
    pub fn with_level(hz: f64, dbov: u8) -> Result<Self, ToneError> {
        let rms = 32_767.0 * 10f64.powf(-f64::from(dbov) / 20.0);
        Ok(Self { amplitude: (rms * std::f64::consts::SQRT_2).min(32_767.0), ..Self::new(hz)? })
    }

    /// The tone's level in -dBov (RMS against full scale), for the RTP audio level.
    pub fn level_dbov(&self) -> u8 {
        let rms = self.amplitude / std::f64::consts::SQRT_2;
        (-20.0 * (rms / 32_767.0).log10()).round().clamp(0.0, 127.0) as u8
    }

    /// The next 20 ms, encoded.
    pub fn next_frame(&mut self) -> Result<Vec<u8>, ToneError> {
        let pcm: Vec<i16> = (0..FRAME as u64)
            .map(|i| {
                let t = (self.n + i) as f64 / 48_000.0;
                ((2.0 * std::f64::consts::PI * self.hz * t).sin() * self.amplitude) as i16
            })
            .collect();
        self.n += FRAME as u64;
        let mut out = vec![0u8; 1500];
        let len = self.enc.encode(&pcm, &mut out).map_err(|e| e.to_string())?;
        out.truncate(len);
        Ok(out)
    }
}

/// Decodes Opus frames into 48 kHz mono samples.
pub struct Decoder(opus::Decoder);

impl Decoder {
    /// A 48 kHz mono decoder.
    pub fn new() -> Result<Self, ToneError> {
        Ok(Self(opus::Decoder::new(48_000, opus::Channels::Mono).map_err(|e| e.to_string())?))
    }

    /// Appends the samples of one frame to `pcm`.
    pub fn decode(&mut self, frame: &[u8], pcm: &mut Vec<f32>) {
        let mut buf = vec![0i16; 5760];
        if let Ok(n) = self.0.decode(frame, &mut buf, false) {
            pcm.extend(buf[..n].iter().map(|s| f32::from(*s) / 32768.0));
        }
    }
}

/// Power of `hz` in `pcm` (Goertzel).
pub fn power(pcm: &[f32], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in pcm {
        let s0 = f64::from(*x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The strongest frequency between 100 Hz and 4 kHz, in 5 Hz steps.
pub fn dominant(pcm: &[f32]) -> f64 {
    (20..800)
        .map(|i| f64::from(i) * 5.0)
        .map(|hz| (hz, power(pcm, hz)))
        .fold((0.0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best })
        .0
}
