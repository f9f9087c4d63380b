//! Kubernetes name rules (DNS-1123 labels) and Nimbus/Knative naming conventions.

/// Check a DNS-1123 label: 1–63 chars of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn check_dns_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 63 {
        return Err(format!(
            "{value:?} is {} characters long; at most 63 are allowed",
            value.len()
        ));
    }
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !(ok_chars && ok_ends) {
        return Err(format!(
            "{value:?} is not a valid DNS label: use lower-case letters, digits and '-', \
             starting and ending with a letter or digit (e.g. \"my-name\")"
        ));
    }
    Ok(())
}

/// Check a DNS-1123 subdomain (RuntimeClass names): at most 253 characters, dot-separated
/// DNS labels.
pub fn check_dns_subdomain(value: &str) -> Result<(), String> {
    if value.len() > 253 {
        return Err(format!(
            "{value:?} is {} characters long; at most 253 are allowed",
            value.len()
        ));
    }
    value.split('.').try_for_each(check_dns_label)
}

/// Check a qualified name (label and annotation keys, extended resource names): an optional
/// DNS-subdomain prefix and `/`, then a name of 1–63 characters of `[A-Za-z0-9-_.]` starting
/// and ending alphanumeric (Kubernetes' `IsQualifiedName`).
pub fn check_qualified_name(value: &str) -> Result<(), String> {
    let (prefix, name) = match value.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(format!("{value:?} has an empty prefix before '/'"));
        }
        check_dns_subdomain(prefix).map_err(|e| format!("the prefix of {value:?}: {e}"))?;
    }
    check_label_value(name)
        .and_then(|()| match name.is_empty() {
            true => Err("must not be empty".into()),
            false => Ok(()),
        })
        .map_err(|e| format!("{e} (the name part of a key like \"example.com/my-key\")"))
}

/// Check a label value: at most 63 characters of `[A-Za-z0-9-_.]`, starting and ending
/// alphanumeric, or empty.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!(
            "{:?}... is {} characters long; at most 63 are allowed",
            value.chars().take(20).collect::<String>(),
            value.len()
        ));
    }
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ok_ends = value.is_empty()
        || value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !(ok_chars && ok_ends) {
        return Err(format!(
            "{value:?} is not valid: use letters, digits, '-', '_' and '.', starting and ending \
             with a letter or digit"
        ));
    }
    Ok(())
}

/// The name of the `n`th revision of a configuration (`hello-00001`).
pub fn revision_name(configuration: &str, n: i64) -> String {
    format!("{configuration}-{n:05}")
}

/// `<service>.<namespace>.<domain>`
pub fn route_host(name: &str, namespace: &str, domain: &str) -> String {
    format!("{name}.{namespace}.{domain}")
}

/// `<tag>-<service>.<namespace>.<domain>`
pub fn tag_host(tag: &str, name: &str, namespace: &str, domain: &str) -> String {
    format!("{tag}-{name}.{namespace}.{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_follow_kubernetes() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "nvidia.com/gpu",
            "A_b-1.c",
            "x",
        ] {
            assert!(check_qualified_name(ok).is_ok(), "{ok}");
        }
        let long_name = "n".repeat(64);
        let long_prefix = format!("{}/n", "p".repeat(254));
        for bad in [
            "",
            "/x",
            "x/",
            "-x",
            "x-",
            "a b",
            &long_name,
            &long_prefix,
            "UPPER.com/x",
        ] {
            assert!(check_qualified_name(bad).is_err(), "{bad}");
        }
        assert!(check_label_value("").is_ok());
        assert!(check_label_value(&"v".repeat(63)).is_ok());
        assert!(check_label_value(&"v".repeat(64)).is_err());
    }

    #[test]
    fn dns_labels() {
        assert!(check_dns_label("hello-1").is_ok());
        for bad in ["", "Hello", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn revision_names_are_zero_padded() {
        assert_eq!(revision_name("hello", 1), "hello-00001");
        assert_eq!(
            route_host("hello", "default", "localhost"),
            "hello.default.localhost"
        );
        assert_eq!(
            tag_host("v1", "hello", "default", "localhost"),
            "v1-hello.default.localhost"
        );
    }
}
