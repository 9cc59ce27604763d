//! Signed access tokens (JWT). HS256 keys are shared secrets named in the config (the server
//! can mint with them); EdDSA and ES256 keys are public keys (PEM) of whoever mints elsewhere.
//! Every key has a name, the token header's `kid`, and one algorithm: a token whose header names
//! another algorithm is refused before any signature check (no `alg: none`, no HS256 "signed"
//! with a public key).
//!
//! Claims: `room` (exact) or `room_prefix`, `name` (the display name it fixes), `sub` (an
//! identity, for bans), `role`, `exp` (required), `nbf` (optional).

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::role::Role;
use crate::config::Secret;

/// One key as configured under `[auth.keys.<kid>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// "HS256", "EdDSA" or "ES256".
    pub alg: String,
    /// HS256: the shared secret, at least 32 bytes. Never logged.
    #[serde(default)]
    pub secret: Secret,
    /// EdDSA / ES256: the public key, PEM text...
    #[serde(default)]
    pub public_key: String,
    /// ... or the path of a PEM file.
    #[serde(default)]
    pub public_key_file: String,
}

impl KeyConfig {
    /// A shared-secret (HS256) key, as `sfu-lite token` and tests sign with.
    pub fn hs256(secret: &str) -> Self {
        Self {
            alg: "HS256".into(),
            secret: Secret(secret.into()),
            public_key: String::new(),
            public_key_file: String::new(),
        }
    }
}

/// What a token says, as signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub role: Role,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl Claims {
    /// Claims for `room` (a name ending in `*` is a prefix), valid from now for `ttl_secs`.
    pub fn new(room: &str, name: Option<String>, role: Role, ttl_secs: u64) -> Self {
        let now = jsonwebtoken::get_current_timestamp();
        let (room, room_prefix) = match room.strip_suffix('*') {
            Some(prefix) => (None, Some(prefix.to_string())),
            None => (Some(room.to_string()), None),
        };
        Self {
            room,
            room_prefix,
            sub: name.clone(),
            name,
            role,
            exp: now + ttl_secs,
            nbf: None,
            iat: Some(now),
        }
    }
}

/// Why a token was refused. Each has its own error code on the wire; none carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is longer than the limit")]
    TooLarge,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is not signed with the algorithm of its key (alg none, or another)")]
    WrongAlgorithm,
    #[error("the token names no key this server knows")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another room")]
    WrongRoom,
}

struct Key {
    alg: Algorithm,
    decoding: DecodingKey,
    /// HS256 keys only: the server can mint with them.
    encoding: Option<EncodingKey>,
}

/// The configured keys.
#[derive(Default)]
pub struct Keys {
    keys: HashMap<String, Key>,
    leeway_secs: u64,
}

/// The header fields read before verification (a typed `Header` cannot even represent "none").
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl Keys {
    pub fn from_config(
        keys: &BTreeMap<String, KeyConfig>,
        leeway_secs: u64,
    ) -> Result<Self, String> {
        let mut out = HashMap::new();
        for (kid, k) in keys {
            let key = load(k).map_err(|e| format!("auth.keys.{kid}: {e}"))?;
            out.insert(kid.clone(), key);
        }
        Ok(Self {
            keys: out,
            leeway_secs,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` for `room`. Its length is checked before anything is parsed.
    pub fn verify(&self, token: &str, room: &str, max_bytes: usize) -> Result<Claims, TokenError> {
        if token.len() > max_bytes {
            return Err(TokenError::TooLarge);
        }
        let header = token.split('.').next().ok_or(TokenError::Malformed)?;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        let header: RawHeader =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        let key = match header.kid {
            Some(kid) => self.keys.get(&kid).ok_or(TokenError::UnknownKey)?,
            // Without a `kid`, only an unambiguous key will do.
            None if self.keys.len() == 1 => {
                self.keys.values().next().ok_or(TokenError::UnknownKey)?
            }
            None => return Err(TokenError::UnknownKey),
        };
        if header.alg != alg_name(key.alg) {
            return Err(TokenError::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                _ => TokenError::Malformed,
            })?
            .claims;
        let fits = match (&claims.room, &claims.room_prefix) {
            (Some(exact), _) if exact == room => true,
            (_, Some(prefix)) if !prefix.is_empty() && room.starts_with(prefix.as_str()) => true,
            _ => false,
        };
        if !fits {
            return Err(TokenError::WrongRoom);
        }
        Ok(claims)
    }

    /// Signs `claims` with HS256 key `kid` (or the only HS256 key when `kid` is `None`).
    pub fn mint(&self, kid: Option<&str>, claims: &Claims) -> Result<String, String> {
        let mut hs = self.keys.iter().filter(|(_, k)| k.encoding.is_some());
        let (kid, key) = match kid {
            Some(kid) => hs
                .find(|(name, _)| name.as_str() == kid)
                .ok_or_else(|| format!("no HS256 key named {kid:?} in auth.keys"))?,
            None => {
                let first = hs.next().ok_or("no HS256 key in auth.keys to sign with")?;
                if hs.next().is_some() {
                    return Err("several HS256 keys in auth.keys: name one".into());
                }
                first
            }
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let encoding = key.encoding.as_ref().ok_or("not a signing key")?;
        jsonwebtoken::encode(&header, claims, encoding).map_err(|e| e.to_string())
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "",
    }
}

/// Shortest HS256 secret accepted: 256 bits, as RFC 7518 asks of HS256 keys.
const MIN_SECRET: usize = 32;

fn load(k: &KeyConfig) -> Result<Key, String> {
    let pem = || -> Result<Vec<u8>, String> {
        match (k.public_key.trim(), k.public_key_file.trim()) {
            ("", "") => Err("needs public_key or public_key_file".into()),
            (text, "") => Ok(text.as_bytes().to_vec()),
            ("", path) => std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}")),
            _ => Err("give public_key or public_key_file, not both".into()),
        }
    };
    match k.alg.as_str() {
        "HS256" => {
            if !k.public_key.is_empty() || !k.public_key_file.is_empty() {
                return Err("an HS256 key is a secret, not a public key".into());
            }
            if k.secret.0.len() < MIN_SECRET {
                return Err(format!("an HS256 secret needs at least {MIN_SECRET} bytes"));
            }
            let secret = k.secret.0.as_bytes();
            Ok(Key {
                alg: Algorithm::HS256,
                decoding: DecodingKey::from_secret(secret),
                encoding: Some(EncodingKey::from_secret(secret)),
            })
        }
        "EdDSA" | "ES256" if !k.secret.is_empty() => {
            Err("a public-key algorithm takes public_key, not secret".into())
        }
        "EdDSA" => Ok(Key {
            alg: Algorithm::EdDSA,
            decoding: DecodingKey::from_ed_pem(&pem()?).map_err(|e| e.to_string())?,
            encoding: None,
        }),
        "ES256" => Ok(Key {
            alg: Algorithm::ES256,
            decoding: DecodingKey::from_ec_pem(&pem()?).map_err(|e| e.to_string())?,
            encoding: None,
        }),
        other => Err(format!("alg {other:?}: expected HS256, EdDSA or ES256")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys() -> Keys {
        let mut config = BTreeMap::new();
        config.insert("main".to_string(), KeyConfig::hs256(SECRET));
        Keys::from_config(&config, 0).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims(room: &str) -> Claims {
        Claims {
            room: Some(room.into()),
            room_prefix: None,
            name: Some("Ada".into()),
            sub: None,
            role: Role::Moderator,
            exp: now() + 600,
            nbf: None,
            iat: None,
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn a_minted_token_verifies_for_its_room_only() {
        let k = keys();
        let t = k.mint(None, &claims("r")).unwrap();
        assert_eq!(k.verify(&t, "r", 4096).unwrap().role, Role::Moderator);
        assert_eq!(k.verify(&t, "r2", 4096), Err(TokenError::WrongRoom));
        let prefix = Claims {
            room: None,
            room_prefix: Some("team-".into()),
            ..claims("x")
        };
        let t = k.mint(None, &prefix).unwrap();
        assert!(k.verify(&t, "team-a", 4096).is_ok());
        assert_eq!(k.verify(&t, "other", 4096), Err(TokenError::WrongRoom));
    }

    #[test]
    fn every_defect_has_its_error() {
        let k = keys();
        let good = k.mint(None, &claims("r")).unwrap();
        assert_eq!(k.verify(&good, "r", 10), Err(TokenError::TooLarge));
        assert_eq!(k.verify("nonsense", "r", 4096), Err(TokenError::Malformed));
        let body = good.split('.').nth(1).unwrap();
        let none = format!("{}.{body}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(k.verify(&none, "r", 4096), Err(TokenError::WrongAlgorithm));
        let hs512 = format!("{}.{body}.x", b64(r#"{"alg":"HS512","kid":"main"}"#));
        assert_eq!(k.verify(&hs512, "r", 4096), Err(TokenError::WrongAlgorithm));
        let unknown = format!("{}.{body}.x", b64(r#"{"alg":"HS256","kid":"old"}"#));
        assert_eq!(k.verify(&unknown, "r", 4096), Err(TokenError::UnknownKey));
        let mut forged = good.clone();
        forged.pop();
        forged.push(if good.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(k.verify(&forged, "r", 4096), Err(TokenError::BadSignature));
        let expired = Claims {
            exp: now() - 600,
            ..claims("r")
        };
        let t = k.mint(None, &expired).unwrap();
        assert_eq!(k.verify(&t, "r", 4096), Err(TokenError::Expired));
        let early = Claims {
            nbf: Some(now() + 600),
            ..claims("r")
        };
        let t = k.mint(None, &early).unwrap();
        assert_eq!(k.verify(&t, "r", 4096), Err(TokenError::NotYetValid));
    }

    #[test]
    fn weak_or_mismatched_keys_are_refused_at_load() {
        let mut config = BTreeMap::new();
        config.insert("k".to_string(), KeyConfig::hs256("short"));
        assert!(Keys::from_config(&config, 0).is_err());
        config.get_mut("k").unwrap().alg = "none".into();
        assert!(Keys::from_config(&config, 0).is_err());
    }
}
