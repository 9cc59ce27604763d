use super::*;

#[test]
fn test_parse_url_success() -> Result<()> {
    let tests = vec![
        (
            "stun:127.0.0.1",
            "stun:127.0.0.1:3478",
            SchemeType::Stun,
            false,
            "127.0.0.1",
            3478,
            ProtoType::Udp,
        ),
        (
            "stun:127.0.0.1:1234",
            "stun:127.0.0.1:1234",
            SchemeType::Stun,
            false,
            "127.0.0.1",
            1234,
            ProtoType::Udp,
        ),
        (
            "stuns:127.0.0.1",
            "stuns:127.0.0.1:5349",
            SchemeType::Stuns,
            true,
            "127.0.0.1",
            5349,
            ProtoType::Tcp,
        ),
        (
            "stun:[::1]:123",
            "stun:[::1]:123",
            SchemeType::Stun,
            false,
            "::1",
            123,
            ProtoType::Udp,
        ),
        (
            "turn:127.0.0.1",
            "turn:127.0.0.1:3478?transport=udp",
            SchemeType::Turn,
            false,
            "127.0.0.1",
            3478,
            ProtoType::Udp,
        ),
        (
            "turns:127.0.0.1",
            "turns:127.0.0.1:5349?transport=tcp",
            SchemeType::Turns,
            true,
            "127.0.0.1",
            5349,
            ProtoType::Tcp,
        ),
        (
            "turn:127.0.0.1?transport=udp",
            "turn:127.0.0.1:3478?transport=udp",
            SchemeType::Turn,
            false,
            "127.0.0.1",
            3478,
            ProtoType::Udp,
        ),
        (
            "turns:127.0.0.1?transport=tcp",
            "turns:127.0.0.1:5349?transport=tcp",
            SchemeType::Turns,
            true,
            "127.0.0.1",
            5349,
            ProtoType::Tcp,
        ),
    ];

    for (
        raw_url,
        expected_url_string,
        expected_scheme,
        expected_secure,
        expected_host,
        expected_port,
        expected_proto,
    ) in tests
    {
        let url = Url::parse_url(raw_url)?;

        assert_eq!(url.scheme, expected_scheme, "testCase: {raw_url:?}");
        assert_eq!(
            expected_url_string,
            url.to_string(),
            "testCase: {raw_url:?}"
        );
        assert_eq!(url.is_secure(), expected_secure, "testCase: {raw_url:?}");
        assert_eq!(url.host, expected_host, "testCase: {raw_url:?}");
        assert_eq!(url.port, expected_port, "testCase: {raw_url:?}");
        assert_eq!(url.proto, expected_proto, "testCase: {raw_url:?}");
    }

    Ok(())
}

#[test]
fn test_parse_url_failure() -> Result<()> {
    let tests = vec![
        ("", Error::ErrSchemeType),
        (":::", Error::ErrUrlParse),
        ("stun:[::1]:123:", Error::ErrPort),
        ("stun:[::1]:123a", Error::ErrPort),
        ("127.0.0.1", Error::ErrSchemeType),
        ("stun:", Error::ErrHost),
        ("stun:127.0.0.1:abc", Error::ErrPort),
        ("stun:127.0.0.1?transport=udp", Error::ErrStunQuery),
        ("stuns:127.0.0.1?transport=udp", Error::ErrStunQuery),
        ("turn:127.0.0.1?trans=udp", Error::ErrInvalidQuery),
        ("turns:127.0.0.1?trans=udp", Error::ErrInvalidQuery),
        (
            "turns:127.0.0.1?transport=udp&another=1",
            Error::ErrInvalidQuery,
        ),
        ("turn:127.0.0.1?transport=ip", Error::ErrProtoType),
    ];

    for (raw_url, expected_err) in tests {
        let result = Url::parse_url(raw_url);
        if let Err(err) = result {
            assert_eq!(
                err.to_string(),
                expected_err.to_string(),
                "testCase: '{raw_url}', expected err '{expected_err}', but got err '{err}'"
            );
        } else {
            panic!("expected error, but got ok");
        }
    }

    Ok(())
}
