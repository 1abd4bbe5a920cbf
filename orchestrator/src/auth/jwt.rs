//! JWTs (HS256): 15-minute access tokens, and 7-day refresh tokens that are also stored
//! hashed so that they can rotate and be revoked.

use crate::error::{Error, Result};
use jsonwebtoken::{decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The tenant id.
    pub tid: String,
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub sub: String,
    pub tid: String,
    /// The stored token's id.
    pub jti: String,
    /// Rotation family: reuse of a rotated token revokes the whole family.
    pub fam: String,
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing a token: {e}")))
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims> {
        let claims: AccessClaims = self.decode(token)?;
        if claims.typ != "access" {
            return Err(Error::unauthorized("this is not an access token"));
        }
        Ok(claims)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims> {
        let claims: RefreshClaims = self.decode(token)?;
        if claims.typ != "refresh" {
            return Err(Error::unauthorized("this is not a refresh token"));
        }
        Ok(claims)
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, token: &str) -> Result<T> {
        decode::<T>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Error::Unauthorized {
                    code: "token_expired",
                    message: "the token has expired; refresh it at POST /auth/refresh or log in again".into(),
                },
                _ => Error::unauthorized("the token is not valid"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            sub: "usr_1".into(),
            tid: "ten_1".into(),
            typ: "access".into(),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let now = chrono::Utc::now().timestamp();
        let token = keys.sign(&claims(now + 60)).unwrap();
        assert_eq!(keys.verify_access(&token).unwrap().tid, "ten_1");
        let expired = keys.sign(&claims(now - 1)).unwrap();
        assert_eq!(keys.verify_access(&expired).unwrap_err().code(), "token_expired");
        let other = JwtKeys::new(b"another-secret-another-secret!!!");
        assert_eq!(other.verify_access(&token).unwrap_err().code(), "unauthorized");
        assert!(keys.verify_refresh(&token).is_err());
    }
}
