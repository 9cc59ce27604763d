//! Pure limit logic, free of sockets so it can be tested directly: the per-socket event gate
//! (token bucket, once-a-second `rate_limited` answers, refusal strikes) and the room and
//! display name rules (Unicode general categories from `unicode-properties`).

use std::time::{Duration, Instant};

use unicode_properties::{UnicodeEmoji, UnicodeGeneralCategory};

use crate::config::SignalingConfig;

/// A socket's strikes are forgotten after this long without a refusal, so a long-lived client
/// that makes the odd mistake is never disconnected for it; only a sustained abuser is.
const STRIKE_MEMORY: Duration = Duration::from_secs(60);
/// At most one `rate_limited` answer per socket per this interval; the rest are dropped.
const RATE_ANSWER_INTERVAL: Duration = Duration::from_secs(1);

/// What the gate says about one incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Over the rate: answer with `rate_limited`.
    Answer,
    /// Over the rate and already answered within the last second: drop silently.
    Drop,
}

/// Per-socket event gate: a token bucket refilled at `events_per_second` up to `event_burst`,
/// and a count of refused events that decides when a socket is cut off.
#[derive(Debug)]
pub struct Gate {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    last_answer: Option<Instant>,
    strikes: u32,
    last_strike: Instant,
    max_strikes: u32,
}

impl Gate {
    pub fn new(config: &SignalingConfig, now: Instant) -> Self {
        Self {
            rate: f64::from(config.events_per_second),
            burst: f64::from(config.event_burst),
            tokens: f64::from(config.event_burst),
            refilled: now,
            last_answer: None,
            strikes: 0,
            last_strike: now,
            max_strikes: config.max_refused_events.max(1),
        }
    }

    /// Takes one token for an incoming event.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Accept;
        }
        match self.last_answer {
            Some(at) if now.saturating_duration_since(at) < RATE_ANSWER_INTERVAL => Admission::Drop,
            _ => {
                self.last_answer = Some(now);
                Admission::Answer
            }
        }
    }

    /// Counts one refused (answered or dropped) event. True when the socket has now been refused
    /// `max_refused_events` times without a quiet minute, and must be disconnected.
    pub fn strike(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last_strike) > STRIKE_MEMORY {
            self.strikes = 0;
        }
        self.last_strike = now;
        self.strikes = self.strikes.saturating_add(1);
        self.strikes >= self.max_strikes
    }
}

/// Room names: 1..=max characters, each a letter or digit (any script) or one of `-`, `_`, `.`.
pub fn check_room_name(name: &str, max: usize) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 {
        return Err("room name is empty".into());
    }
    if len > max {
        return Err(format!(
            "room name has {len} characters, at most {max} allowed"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "room name may contain letters, digits, '-', '_' and '.', not {c:?}"
        ));
    }
    Ok(())
}

/// Display names: 1..=max characters that can be shown as they are. By Unicode general
/// category: no controls (Cc), format characters (Cf: bidi overrides and isolates, zero-width
/// spaces and joiners, tags), private-use (Co) or unassigned (Cn) code points, line or
/// paragraph separators (Zl, Zp); at least one character that draws something (a letter,
/// number, punctuation mark or symbol); and not ending in the page's own " (you)" label.
/// The one format character allowed is the zero-width joiner inside an emoji sequence
/// (UTS #51), so names like "Ada 👩‍💻" still work.
pub fn check_display_name(name: &str, max: usize) -> Result<(), String> {
    let len = name.chars().count();
    if name.trim().is_empty() {
        return Err("display name is empty".into());
    }
    if len > max {
        return Err(format!(
            "display name has {len} characters, at most {max} allowed"
        ));
    }
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if let Some(what) = hidden(c) {
            if c == '\u{200D}' && joins_emoji(&chars, i) {
                continue;
            }
            return Err(format!(
                "display name may not contain {what} (U+{:04X})",
                u32::from(c)
            ));
        }
    }
    if !chars.iter().copied().any(draws) {
        return Err("display name has no visible character".into());
    }
    if name.trim_end().to_lowercase().ends_with(YOU_LABEL) {
        return Err(format!(
            "display name may not end in {YOU_LABEL:?}, the page's label for oneself"
        ));
    }
    Ok(())
}

/// What the web page appends to the user's own name (static/js/room-view.js).
const YOU_LABEL: &str = "(you)";

/// Why `c` cannot be shown honestly, by its general category; `None` if it can.
fn hidden(c: char) -> Option<&'static str> {
    use unicode_properties::GeneralCategory as G;
    Some(match c.general_category() {
        G::Control => "a control character",
        G::Format => "an invisible formatting character",
        G::PrivateUse => "a private-use character",
        G::Unassigned | G::Surrogate => "an unassigned code point",
        G::LineSeparator | G::ParagraphSeparator => "a line break",
        _ => return None,
    })
}

/// A zero-width joiner at `i` that glues two emoji into one (a ZWJ sequence).
fn joins_emoji(chars: &[char], i: usize) -> bool {
    let before = i.checked_sub(1).and_then(|j| chars.get(j));
    let after = chars.get(i + 1);
    matches!((before, after), (Some(b), Some(a))
        if b.is_emoji_char_or_emoji_component() && a.is_emoji_char())
}

/// Whether `c` draws a glyph: a letter, number, punctuation mark or symbol. Marks draw only on
/// a base character and separators are blank. Five letters and symbols draw nothing although
/// their category says otherwise: the Hangul fillers (Unicode lists them as default-ignorable,
/// a property the category does not capture) and the blank braille pattern.
fn draws(c: char) -> bool {
    use unicode_properties::GeneralCategoryGroup as G;
    const BLANK: [char; 5] = ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{2800}'];
    matches!(
        c.general_category_group(),
        G::Letter | G::Number | G::Punctuation | G::Symbol
    ) && !BLANK.contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(rate: u32, burst: u32, max_refused: u32) -> SignalingConfig {
        let mut c = Config::embedded().signaling;
        c.events_per_second = rate;
        c.event_burst = burst;
        c.max_refused_events = max_refused;
        c
    }

    #[test]
    fn burst_then_one_answer_per_second_then_refill() {
        let t0 = Instant::now();
        let mut gate = Gate::new(&config(10, 3, 100), t0);
        for _ in 0..3 {
            assert_eq!(gate.admit(t0), Admission::Accept);
        }
        assert_eq!(gate.admit(t0), Admission::Answer);
        assert_eq!(gate.admit(t0), Admission::Drop);
        let later = t0 + Duration::from_millis(150);
        assert_eq!(gate.admit(later), Admission::Accept);
        assert_eq!(gate.admit(later), Admission::Drop);
        let much_later = t0 + Duration::from_secs(2);
        for _ in 0..3 {
            assert_eq!(gate.admit(much_later), Admission::Accept);
        }
        assert_eq!(gate.admit(much_later), Admission::Answer);
    }

    #[test]
    fn strikes_cut_off_and_are_forgotten_after_quiet() {
        let t0 = Instant::now();
        let mut gate = Gate::new(&config(10, 3, 3), t0);
        assert!(!gate.strike(t0));
        assert!(!gate.strike(t0));
        let quiet = t0 + STRIKE_MEMORY + Duration::from_secs(1);
        assert!(!gate.strike(quiet));
        assert!(!gate.strike(quiet));
        assert!(gate.strike(quiet));
    }

    #[test]
    fn room_names() {
        assert!(check_room_name("standup-2.b_x", 64).is_ok());
        assert!(check_room_name("聊天室", 64).is_ok());
        assert!(check_room_name("", 64).is_err());
        assert!(check_room_name("a b", 64).is_err());
        assert!(check_room_name("a/b", 64).is_err());
        assert!(check_room_name(&"a".repeat(65), 64).is_err());
        assert!(check_room_name(&"é".repeat(64), 64).is_ok());
    }

    #[test]
    fn display_names() {
        assert!(check_display_name("Ada Lovelace", 64).is_ok());
        assert!(check_display_name("   ", 64).is_err());
        assert!(check_display_name("a\u{0}b", 64).is_err());
        assert!(check_display_name("a\nb", 64).is_err());
        assert!(check_display_name(&"x".repeat(65), 64).is_err());
    }

    fn refused(name: &str) -> String {
        check_display_name(name, 64).expect_err(name)
    }

    #[test]
    fn display_names_in_any_script_and_with_emoji_are_shown() {
        for name in [
            "Zoë Ōtake",
            "李小龙",
            "محمد",
            "אבי כהן",
            "Nguyễn Văn An",
            "Ада",
            "Ada 👩‍💻",
            "👨‍👩‍👧",
            "🇫🇷 Léa",
            "R2-D2 (robot)",
            "(you) first is fine",
            "x",
        ] {
            assert_eq!(check_display_name(name, 64), Ok(()), "{name}");
        }
    }

    #[test]
    fn bidi_controls_and_other_format_characters_are_refused() {
        // Overrides, embeddings, isolates, marks, and the invisible rest of category Cf.
        for c in [
            '\u{202E}',
            '\u{202D}',
            '\u{202A}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{200C}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
        ] {
            let e = refused(&format!("Ada{c}moc.exe"));
            assert!(e.contains("formatting"), "U+{:04X}: {e}", u32::from(c));
        }
        // A zero-width joiner outside an emoji sequence is one more hiding place.
        assert!(refused("Ada\u{200D}Bob").contains("U+200D"));
        assert!(refused("👩\u{200D}").contains("U+200D"));
    }

    #[test]
    fn controls_private_use_unassigned_and_line_breaks_are_refused() {
        assert!(refused("a\u{7}b").contains("control"));
        assert!(refused("a\u{85}b").contains("control"));
        assert!(refused("a\u{E000}b").contains("private-use"));
        assert!(refused("a\u{10FFFD}b").contains("private-use"));
        assert!(refused("a\u{0378}b").contains("unassigned"));
        assert!(refused("a\u{2028}b").contains("line break"));
        assert!(refused("a\u{2029}b").contains("line break"));
    }

    #[test]
    fn names_that_draw_nothing_are_refused() {
        for name in [
            "\u{3164}",
            "\u{3164}\u{3164}\u{3164}",
            "\u{115F}\u{1160}",
            "\u{FFA0}",
            "\u{2800}\u{2800}",
            "\u{0301}\u{0301}",
            "\u{034F}",
            "\u{FE0F}",
            "\u{3000}\u{00A0}\u{2003}",
        ] {
            let e = refused(name);
            assert!(
                e.contains("visible") || e.contains("empty"),
                "{name:?}: {e}"
            );
        }
    }

    #[test]
    fn names_ending_in_the_pages_own_label_are_refused() {
        for name in ["Ada (you)", "Ada (YOU)", "Ada(you)", "Ada (you)  ", "(you)"] {
            assert!(refused(name).contains("(you)"), "{name:?}");
        }
    }
}
