//! Reading params as upstream's graphs write them. Upstream decodes params into Go structs,
//! where an empty text is the same as an unset one: its example graphs write `shell: ''`
//! for "no shell", and `timeout: 0` for "no timeout". A param that means "none" when empty
//! or zero is decoded with [`unset_if_empty`] or [`unset_if_zero`].

use serde::{Deserialize, Deserializer};

/// An optional text param where `''` means unset, as in upstream's graphs.
pub fn unset_if_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// An optional number param where `0` means unset, as in upstream's graphs.
pub fn unset_if_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.filter(|n| *n != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct P {
        #[serde(default, deserialize_with = "unset_if_empty")]
        shell: Option<String>,
        #[serde(default, deserialize_with = "unset_if_zero")]
        timeout: Option<u64>,
    }

    #[test]
    fn an_empty_text_is_unset_and_any_other_is_kept() {
        let shell = |json: &str| serde_json::from_str::<P>(json).unwrap().shell;
        assert_eq!(shell(r#"{"shell": ""}"#), None);
        assert_eq!(shell(r#"{}"#), None);
        assert_eq!(shell(r#"{"shell": null}"#), None);
        assert_eq!(shell(r#"{"shell": " "}"#).as_deref(), Some(" "));
        assert_eq!(shell(r#"{"shell": "/bin/sh"}"#).as_deref(), Some("/bin/sh"));
    }

    #[test]
    fn a_zero_number_is_unset_and_any_other_is_kept() {
        let timeout = |json: &str| serde_json::from_str::<P>(json).unwrap().timeout;
        assert_eq!(timeout(r#"{"timeout": 0}"#), None);
        assert_eq!(timeout(r#"{}"#), None);
        assert_eq!(timeout(r#"{"timeout": 3}"#), Some(3));
    }
}
