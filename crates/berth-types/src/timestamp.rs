//! Timestamps as ECS sends them: epoch seconds as a JSON number with
//! millisecond precision (`1510811361.128`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch; serialized as fractional seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    pub fn now() -> Self {
        let elapsed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole seconds stay integral on the wire only when the millis are 0;
        // clients parse both forms.
        #[allow(clippy::cast_precision_loss)]
        let secs = self.0 as f64 / 1000.0;
        s.serialize_f64(secs)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(d)?;
        if !secs.is_finite() {
            return Err(serde::de::Error::custom(
                "timestamp must be a finite number",
            ));
        }
        #[allow(clippy::cast_possible_truncation)]
        Ok(Self((secs * 1000.0).round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_fractional_seconds() {
        let t = Timestamp::from_millis(1_510_811_361_128);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1510811361.128");
        let back: Timestamp = serde_json::from_str("1510811361.128").unwrap();
        assert_eq!(back, t);
        let whole: Timestamp = serde_json::from_str("1510811361").unwrap();
        assert_eq!(whole.millis(), 1_510_811_361_000);
    }
}
