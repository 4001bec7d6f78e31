//! Report links: `{public_url}/reports/{run}.pdf?expires=UNIX&sig=HEX`, where the
//! signature is an HMAC over the run and the expiry under a key derived from the report
//! signing key. Whoever holds a link may download that run's report until it expires;
//! nothing else about the service is reachable through it.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use offboard_core::domain::RunId;

use crate::ReportKey;

/// How long a link posted in chat works.
pub const LINK_TTL: Duration = Duration::days(7);

pub struct ReportLinks {
    base: String,
    key: [u8; 32],
    ttl: Duration,
}

impl ReportLinks {
    pub fn new(public_url: &str, signing: &ReportKey, ttl: Duration) -> Self {
        ReportLinks { base: public_url.trim_end_matches('/').to_string(), key: signing.link_key(), ttl }
    }

    fn mac(&self, run: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("offboard-report\n{run}\n{expires}").as_bytes());
        mac
    }

    /// A link to the run's report, valid until `now` + the links' lifetime.
    pub fn link(&self, run: &RunId, now: DateTime<Utc>) -> String {
        let expires = (now + self.ttl).timestamp();
        let sig = hex::encode(self.mac(run.as_str(), expires).finalize().into_bytes());
        format!("{}/reports/{run}.pdf?expires={expires}&sig={sig}", self.base)
    }

    /// The run a request for `file` (`ob-….pdf`) may download, if its expiry is still ahead
    /// and its signature is this key's over both. Compared in constant time.
    pub fn check(&self, file: &str, expires: &str, sig: &str, now: DateTime<Utc>) -> Option<RunId> {
        let run = RunId::parse(file.strip_suffix(".pdf")?).ok()?;
        let expires: i64 = expires.parse().ok()?;
        if expires <= now.timestamp() || expires > (now + self.ttl).timestamp() + 60 {
            return None;
        }
        let sig = hex::decode(sig).ok()?;
        self.mac(run.as_str(), expires).verify_slice(&sig).ok()?;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_its_run_only_until_it_expires() {
        let links = ReportLinks::new("https://offboard.example.com/", &ReportKey::from_seed([7; 32]), LINK_TTL);
        let now = chrono::Utc::now();
        let run = RunId::parse("ob-7k2m9q4x1p").unwrap();
        let link = links.link(&run, now);
        assert!(link.starts_with("https://offboard.example.com/reports/ob-7k2m9q4x1p.pdf?expires="), "{link}");
        let q: std::collections::HashMap<String, String> = serde_urlencoded::from_str(link.split_once('?').unwrap().1).unwrap();
        assert_eq!(links.check("ob-7k2m9q4x1p.pdf", &q["expires"], &q["sig"], now), Some(run));
        assert_eq!(links.check("ob-0000000000.pdf", &q["expires"], &q["sig"], now), None, "another run");
        let later = q["expires"].parse::<i64>().unwrap() + 1;
        assert_eq!(links.check("ob-7k2m9q4x1p.pdf", &later.to_string(), &q["sig"], now), None, "another expiry");
        // The first digit changed, whatever it was (a signature may hold no given digit).
        let sig = &q["sig"];
        let flipped = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
        assert_eq!(links.check("ob-7k2m9q4x1p.pdf", &q["expires"], &flipped, now), None, "another signature");
        assert_eq!(links.check("ob-7k2m9q4x1p.pdf", &q["expires"], &q["sig"], now + LINK_TTL + Duration::seconds(1)), None, "expired");
        let other = ReportLinks::new("https://offboard.example.com", &ReportKey::from_seed([8; 32]), LINK_TTL);
        assert_eq!(other.check("ob-7k2m9q4x1p.pdf", &q["expires"], &q["sig"], now), None, "another key");
    }
}
