//! Just enough DER for what relayd does with certificates itself: the names a keypair
//! answers SNI for, and the copy of a backend's certificate that TLS inspection signs
//! anew. X.509 uses only low tag numbers and definite lengths, so that is all this
//! reads; anything else is refused rather than guessed at.

/// One element: its tag, its contents, and the whole encoding (tag, length, contents).
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub whole: &'a [u8],
}

pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
/// `[0]` constructed: a certificate's version.
pub const VERSION: u8 = 0xa0;
/// `[3]` constructed: a certificate's extensions.
pub const EXTENSIONS: u8 = 0xa3;

/// id-ce-subjectKeyIdentifier (2.5.29.14).
pub const OID_SKI: &[u8] = &[0x55, 0x1d, 0x0e];
/// id-ce-subjectAltName (2.5.29.17).
pub const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// id-ce-authorityKeyIdentifier (2.5.29.35).
pub const OID_AKI: &[u8] = &[0x55, 0x1d, 0x23];
/// id-at-commonName (2.5.4.3).
pub const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// Reads one element from the front of `input`; the rest follows it.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((
        Tlv {
            tag,
            content: &rest[..len],
            whole: &input[..header + len],
        },
        &rest[len..],
    ))
}

/// Reads exactly one element with `tag` that fills `input`.
pub fn only(input: &[u8], tag: u8) -> Option<Tlv<'_>> {
    match read(input)? {
        (t, []) if t.tag == tag => Some(t),
        _ => None,
    }
}

/// The elements of a constructed value's contents, or `None` if any is malformed.
pub fn items(mut content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (t, rest) = read(content)?;
        out.push(t);
        content = rest;
    }
    Some(out)
}

/// Appends tag, length and `content`.
pub fn write(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// A certificate taken apart: its to-be-signed part's elements.
pub struct Tbs<'a> {
    pub version: Option<Tlv<'a>>,
    pub serial: Tlv<'a>,
    pub validity: Tlv<'a>,
    pub subject: Tlv<'a>,
    pub spki: Tlv<'a>,
    /// Each extension (a SEQUENCE of OID, optional critical flag and value).
    pub extensions: Vec<Tlv<'a>>,
}

/// Splits a DER certificate into the elements of its TBSCertificate.
pub fn tbs(cert: &[u8]) -> Option<Tbs<'_>> {
    let cert = only(cert, SEQUENCE)?;
    let (tbs, _) = read(cert.content)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut it = items(tbs.content)?.into_iter().peekable();
    let version = it.next_if(|t| t.tag == VERSION);
    let serial = it.next().filter(|t| t.tag == INTEGER)?;
    let _signature = it.next().filter(|t| t.tag == SEQUENCE)?;
    let _issuer = it.next().filter(|t| t.tag == SEQUENCE)?;
    let validity = it.next().filter(|t| t.tag == SEQUENCE)?;
    let subject = it.next().filter(|t| t.tag == SEQUENCE)?;
    let spki = it.next().filter(|t| t.tag == SEQUENCE)?;
    let mut extensions = Vec::new();
    for t in it {
        if t.tag == EXTENSIONS {
            let list = only(t.content, SEQUENCE)?;
            extensions = items(list.content)?;
        }
    }
    Some(Tbs {
        version,
        serial,
        validity,
        subject,
        spki,
        extensions,
    })
}

/// An extension's OID and the contents of its value's OCTET STRING.
pub fn extension<'a>(ext: &Tlv<'a>) -> Option<(&'a [u8], &'a [u8])> {
    let parts = items(ext.content)?;
    let oid = parts.first().filter(|t| t.tag == OID)?;
    let value = parts.last().filter(|t| t.tag == OCTET_STRING)?;
    Some((oid.content, value.content))
}

/// The names a certificate answers for, as libtls's `tls_check_name` reads them: the
/// DNS names of its subjectAltName, or, when it has no such extension, its subject's
/// common names.
pub fn host_names(cert: &[u8]) -> Vec<String> {
    let Some(tbs) = tbs(cert) else {
        return Vec::new();
    };
    let san = tbs
        .extensions
        .iter()
        .filter_map(extension)
        .find(|(oid, _)| *oid == OID_SAN);
    if let Some((_, value)) = san {
        // GeneralNames; dNSName is [2] IMPLICIT IA5String.
        return only(value, SEQUENCE)
            .and_then(|s| items(s.content))
            .unwrap_or_default()
            .iter()
            .filter(|n| n.tag == 0x82)
            .filter_map(|n| std::str::from_utf8(n.content).ok())
            .map(str::to_string)
            .collect();
    }
    let mut names = Vec::new();
    for rdn in items(tbs.subject.content).unwrap_or_default() {
        for atv in items(rdn.content).unwrap_or_default() {
            let parts = items(atv.content).unwrap_or_default();
            if let [oid, value] = parts.as_slice() {
                if oid.tag == OID && oid.content == OID_CN {
                    if let Ok(s) = std::str::from_utf8(value.content) {
                        names.push(s.to_string());
                    }
                }
            }
        }
    }
    names
}

/// The key identifier of a certificate's subjectKeyIdentifier extension.
pub fn subject_key_id(cert: &[u8]) -> Option<Vec<u8>> {
    let tbs = tbs(cert)?;
    let (_, value) = tbs
        .extensions
        .iter()
        .filter_map(extension)
        .find(|(oid, _)| *oid == OID_SKI)?;
    let id = only(value, OCTET_STRING)?.content;
    (!id.is_empty()).then(|| id.to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test fixtures")]

    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 70000] {
            let content = vec![7u8; len];
            let mut out = Vec::new();
            write(OCTET_STRING, &content, &mut out);
            let (t, rest) = read(&out).unwrap();
            assert!(rest.is_empty());
            assert_eq!(t.tag, OCTET_STRING);
            assert_eq!(t.content.len(), len);
            assert_eq!(t.whole, &out[..]);
        }
    }

    #[test]
    fn truncated_and_indefinite_are_refused() {
        assert!(read(&[0x30]).is_none());
        assert!(read(&[0x30, 0x05, 1, 2]).is_none());
        assert!(read(&[0x30, 0x80, 0, 0]).is_none());
        assert!(read(&[0x1f, 0x01, 0]).is_none());
    }
}
