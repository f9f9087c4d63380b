//! Manifests as `nimbus apply -f` reads them: [`parse_manifests`] (YAML or JSON, several
//! documents, `List`s; decoding, unknown fields, defaulting, validation) never panics, its errors
//! format, and every object it accepts comes back unchanged, and still valid, the ways Nimbus
//! writes objects out: as JSON (the API server, kubectl) and as YAML (`nimbus get -o yaml`,
//! `nimbus export`), parsed again by the same parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_api::Object;
use nimbus_api::parse::{decode_object, parse_manifests};
use nimbus_api::validate::{validate, validate_update};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_manifests("fuzz.yaml", text) {
        Ok(objects) => objects.iter().for_each(round_trip),
        Err(e) => drop(e.to_string()),
    }
});

/// An accepted object is valid, its own unchanged update is valid, and it reads back the same
/// from its JSON value and from JSON and YAML text.
fn round_trip(obj: &Object) {
    assert_eq!(
        validate(obj),
        vec![],
        "an accepted object is invalid: {obj:?}"
    );
    assert_eq!(
        validate_update(obj, obj),
        vec![],
        "a no-op update is refused: {obj:?}"
    );
    let json = obj.to_json();
    let decoded = decode_object(Some(obj.kind()), json.clone())
        .unwrap_or_else(|e| panic!("its JSON value is refused: {e:?}\n{json:#}"));
    assert_eq!(
        decoded.to_json(),
        json,
        "decoding its JSON value changed it"
    );

    let as_json = serde_json::to_string(&json).expect("a JSON value serialises");
    assert_eq!(reparse(&as_json), json, "re-reading it as JSON changed it");
    let as_yaml = serde_saphyr::to_string(&json).expect("a JSON value serialises as YAML");
    assert_eq!(
        reparse(&as_yaml),
        json,
        "re-reading it as YAML changed it:\n{as_yaml}"
    );
}

fn reparse(text: &str) -> serde_json::Value {
    let mut objects = parse_manifests("again", text)
        .unwrap_or_else(|e| panic!("refused when read again: {e}\n{text}"));
    assert_eq!(
        objects.len(),
        1,
        "one object became {}:\n{text}",
        objects.len()
    );
    objects.remove(0).to_json()
}
