//! Identifiers that parse. A value of these types is valid by construction: every
//! constructor that takes outside input checks it and says what is wrong.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused. The message is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} \"{input}\" is not valid: {why}")]
pub struct ParseError {
    pub what: &'static str,
    pub input: String,
    pub why: String,
}

fn refuse(what: &'static str, input: &str, why: impl Into<String>) -> ParseError {
    ParseError { what, input: input.chars().take(120).collect(), why: why.into() }
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A user principal name as Entra accepts it: `alias@domain`, lower-cased.
    Upn
);
string_newtype!(
    /// A Microsoft 365 tenant: its GUID or one of its verified domains, lower-cased.
    TenantId
);
string_newtype!(
    /// A run's public id, short enough to type: `ob-` and ten Crockford base32 digits.
    RunId
);
string_newtype!(
    /// A step's key inside a plan, e.g. `disable_sign_in`.
    StepKey
);
string_newtype!(
    /// A preset's name, e.g. `standard-leaver`.
    PresetName
);
string_newtype!(
    /// An Entra object id (a GUID), lower-cased.
    ObjectId
);

const ALIAS_SPECIALS: &str = "'.-_!#^~";

impl Upn {
    /// Entra's rules: alias of at most 64 of `A-Z a-z 0-9 ' . - _ ! # ^ ~`, not starting
    /// or ending with a period and without two periods in a row; a domain of at most 48
    /// characters made of DNS labels with at least one dot.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        const W: &str = "user principal name";
        let s = input.trim();
        let Some((alias, domain)) = s.split_once('@') else {
            return Err(refuse(W, input, "it needs the form name@domain, e.g. alice@contoso.com"));
        };
        if domain.contains('@') {
            return Err(refuse(W, input, "it contains more than one @"));
        }
        if alias.is_empty() {
            return Err(refuse(W, input, "the part before @ is empty"));
        }
        if alias.chars().count() > 64 {
            return Err(refuse(W, input, "the part before @ is longer than 64 characters"));
        }
        if let Some(c) = alias.chars().find(|c| !(c.is_ascii_alphanumeric() || ALIAS_SPECIALS.contains(*c))) {
            return Err(refuse(W, input, format!("\"{c}\" is not allowed before @ (letters, digits and ' . - _ ! # ^ ~ only)")));
        }
        if alias.starts_with('.') || alias.ends_with('.') {
            return Err(refuse(W, input, "the part before @ cannot start or end with a period"));
        }
        if alias.contains("..") {
            return Err(refuse(W, input, "the part before @ cannot contain two periods in a row"));
        }
        if domain.len() > 48 {
            return Err(refuse(W, input, "the domain is longer than 48 characters"));
        }
        check_domain(domain).map_err(|why| refuse(W, input, why))?;
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the domain after @ is empty".into());
    }
    if !domain.contains('.') {
        return Err(format!("the domain \"{domain}\" has no dot (e.g. contoso.com)"));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(format!("the domain \"{domain}\" has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("the domain label \"{label}\" is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the domain label \"{label}\" starts or ends with a hyphen"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(format!("\"{c}\" is not allowed in a domain"));
        }
    }
    Ok(())
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5 && parts.iter().zip(lens).all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl ObjectId {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input.trim();
        if is_guid(s) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(refuse("object id", input, "it must be a GUID like 8c1d0f47-5a8e-4c5b-9d0e-2f0b6f1a3c21"))
        }
    }
}

impl TenantId {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input.trim();
        if is_guid(s) {
            return Ok(Self(s.to_ascii_lowercase()));
        }
        if s.len() > 253 {
            return Err(refuse("tenant", input, "a domain is at most 253 characters"));
        }
        check_domain(s).map_err(|why| refuse("tenant", input, format!("{why}; give the tenant GUID or a verified domain")))?;
        Ok(Self(s.to_ascii_lowercase()))
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

impl RunId {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input.trim().to_ascii_lowercase();
        let Some(body) = s.strip_prefix("ob-") else {
            return Err(refuse("run id", input, "run ids look like ob-7k2m9x4q1d"));
        };
        if body.len() != 10 || !body.bytes().all(|b| CROCKFORD.contains(&b)) {
            return Err(refuse("run id", input, "run ids look like ob-7k2m9x4q1d"));
        }
        Ok(Self(s))
    }

    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        let body: String = (0..10).map(|_| CROCKFORD[rng.random_range(0..32)] as char).collect();
        Self(format!("ob-{body}"))
    }
}

impl StepKey {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let ok = !input.is_empty()
            && input.len() <= 64
            && input.as_bytes()[0].is_ascii_lowercase()
            && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(refuse("step key", input, "use lower-case letters, digits and _ (at most 64), starting with a letter"))
        }
    }
}

impl PresetName {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input.trim().to_ascii_lowercase();
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(s)) } else { Err(refuse("preset", input, "use letters, digits and - (at most 40), e.g. standard-leaver")) }
    }
}

/// What a person may do. Ordered: each role can do what the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Manager,
    Admin,
    Owner,
}

impl Role {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        match input.trim().to_ascii_lowercase().as_str() {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "manager" => Ok(Self::Manager),
            "viewer" => Ok(Self::Viewer),
            _ => Err(refuse("role", input, "roles are owner, admin, manager and viewer")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The person (or process) behind an action, as the platform that carried it names them.
/// `platform` is `slack`, `teams`, `discord` or `cli`; `id` is that platform's user id
/// (Slack `U…`, Teams AAD object id, Discord snowflake); `groups` are the user groups,
/// Entra groups or Discord roles the platform reported for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub platform: String,
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Actor {
    /// The stable key used to compare people: never the display name.
    pub fn key(&self) -> String {
        format!("{}:{}", self.platform, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_accepts_entra_shapes_and_lowercases() {
        assert_eq!(Upn::parse(" Alice.O'Neil@Contoso.com ").unwrap().as_str(), "alice.o'neil@contoso.com");
        assert_eq!(Upn::parse("a_b-c!d#e^f~g@x.y").unwrap().domain(), "x.y");
    }

    #[test]
    fn upn_refusals_say_why() {
        let cases = [
            ("alice", "name@domain"),
            ("@contoso.com", "before @ is empty"),
            ("alice@", "domain after @ is empty"),
            ("al ice@contoso.com", "\" \" is not allowed"),
            (".alice@contoso.com", "start or end with a period"),
            ("alice.@contoso.com", "start or end with a period"),
            ("al..ice@contoso.com", "two periods"),
            ("alice@contoso", "no dot"),
            ("alice@con_toso.com", "\"_\" is not allowed in a domain"),
            ("alice@-contoso.com", "hyphen"),
            ("a@b@contoso.com", "more than one @"),
        ];
        for (input, why) in cases {
            let err = Upn::parse(input).unwrap_err();
            assert!(err.to_string().contains(why), "{input}: {err}");
        }
        let long = format!("{}@contoso.com", "a".repeat(65));
        assert!(Upn::parse(&long).unwrap_err().to_string().contains("64"));
        let long_domain = format!("a@{}.com", "b".repeat(45));
        assert!(Upn::parse(&long_domain).unwrap_err().to_string().contains("48"));
    }

    #[test]
    fn tenant_is_guid_or_domain() {
        assert!(TenantId::parse("8C1D0F47-5A8E-4C5B-9D0E-2F0B6F1A3C21").is_ok());
        assert_eq!(TenantId::parse("Contoso.onmicrosoft.com").unwrap().as_str(), "contoso.onmicrosoft.com");
        assert!(TenantId::parse("not a tenant").is_err());
        assert!(TenantId::parse("contoso").is_err());
    }

    #[test]
    fn run_ids_round_trip_and_reject_junk() {
        let id = RunId::generate();
        assert_eq!(RunId::parse(id.as_str()).unwrap(), id);
        assert_eq!(RunId::parse("OB-7K2M9X4Q1D").unwrap().as_str(), "ob-7k2m9x4q1d");
        for bad in ["7k2m9x4q1d", "ob-7k2m9x4q1", "ob-7k2m9x4q1u", "ob-7k2m9x4q1d0"] {
            assert!(RunId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn small_names() {
        assert!(StepKey::parse("remove_licences").is_ok());
        assert!(StepKey::parse("Remove").is_err());
        assert!(StepKey::parse("1x").is_err());
        assert_eq!(PresetName::parse("Hostile-Exit").unwrap().as_str(), "hostile-exit");
        assert!(PresetName::parse("no spaces").is_err());
        assert_eq!(Role::parse("ADMIN").unwrap(), Role::Admin);
        assert!(Role::parse("root").is_err());
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Manager && Role::Manager > Role::Viewer);
        assert!(ObjectId::parse("not-a-guid").is_err());
    }

    #[test]
    fn serde_goes_through_parse() {
        let bad: Result<Upn, _> = serde_json::from_str("\"no-at-sign\"");
        assert!(bad.is_err());
        let ok: Upn = serde_json::from_str("\"Bob@Contoso.com\"").unwrap();
        assert_eq!(ok.as_str(), "bob@contoso.com");
    }
}
