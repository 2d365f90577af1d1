use super::*;

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXBhcnQ";

#[test]
fn a_raw_jwt_is_redacted_by_shape_and_a_bare_eyj_is_not() {
    let frame =
        format!(r#"{{"type":"x","token":"{JWT}","note":"eyJ not a token","q":"?token={JWT}"}}"#);
    let r = Redactor::new().redact(&frame).into_owned();
    assert_eq!(
        r,
        r#"{"type":"x","token":"<redacted-jwt>","note":"eyJ not a token","q":"?token=<redacted-jwt>"}"#
    );
}

#[test]
fn every_base64_form_of_a_jwt_is_redacted_by_shape() {
    let r = Redactor::new();
    for f in forms(JWT) {
        for wrapped in [
            format!("jwt.{f}"),
            format!("jwt-auth, jwt.{f}"),
            format!("\"{f}\""),
        ] {
            let out = r.redact(&wrapped);
            for g in forms(JWT) {
                assert!(!out.contains(&g), "{g} left in {out} (from {wrapped})");
            }
        }
    }
}

#[test]
fn a_learned_secret_is_redacted_in_every_form() {
    let r = Redactor::new();
    let key = "k3y/with+odd\"chars&such";
    r.learn(key);
    for f in forms(key) {
        let text = format!("before bearer.{f} after");
        let out = r.redact(&text);
        assert_eq!(out, "before bearer.<redacted> after", "form {f}");
    }
}

#[test]
fn short_and_jwt_values_are_not_learned_and_the_set_is_bounded() {
    let r = Redactor::new();
    r.learn("abc");
    r.learn(JWT);
    assert!(r.read().secrets.is_empty());
    for i in 0..MAX_SECRETS + 3 {
        r.learn(&format!("secret-{i:06}"));
    }
    assert_eq!(r.read().secrets.len(), MAX_SECRETS);
    assert_eq!(r.dropped(), 3);
}

#[test]
fn json_keys_and_strings_are_redacted() {
    let r = Redactor::new();
    r.learn("opaque-token-1");
    let mut v = serde_json::json!({"violations.x.opaque-token-1": 1, "a": ["opaque-token-1", JWT]});
    r.redact_json(&mut v);
    assert_eq!(
        v,
        serde_json::json!({"violations.x.<redacted>": 1, "a": ["<redacted>", "<redacted-jwt>"]})
    );
}

#[test]
fn a_sample_is_redacted_then_cut_and_a_secret_cut_by_the_window_leaves_nothing() {
    let s = sample(&format!("{{\"t\":\"{JWT}\"}}"), 2048);
    assert_eq!(s, "{\"t\":\"<redacted-jwt>\"}");
    // A long frame whose token straddles the scanned window.
    let raw = format!("{}{JWT}", "a".repeat(4 * 64 - 20));
    let s = sample(&raw, 64);
    assert!(
        !s.contains("eyJ") && s.ends_with('…') && s.len() <= 64 + 3,
        "{s}"
    );
    let s = sample(&"é".repeat(100), 11);
    assert_eq!(s, format!("{}…", "é".repeat(5)));
}
