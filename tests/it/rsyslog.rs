//! The rsyslog harness itself: it receives, and it restarts on the same ports.

use crate::support::rsyslog::{rsyslogd_version, Rsyslog};

#[tokio::test]
async fn rsyslog_harness_receives_tcp_and_udp_and_restarts_on_the_same_ports() {
    use tokio::io::AsyncWriteExt;
    let mut r = Rsyslog::start_default().await;
    let (tcp, udp) = (r.tcp_port(), r.udp_port());
    assert_ne!(tcp, 0);
    assert_ne!(udp, 0);

    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", tcp))
        .await
        .expect("connect to imtcp");
    // One octet-counted frame and one LF-framed line on the same listener.
    conn.write_all(b"11 hello octet").await.expect("write");
    conn.write_all(b"hello lf\n").await.expect("write");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sock.send_to(b"hello udp", ("127.0.0.1", udp))
        .await
        .expect("send");
    let mut lines = r.wait_for_lines(3, super::support::PATIENCE).await;
    lines.sort();
    assert_eq!(lines, vec!["hello lf", "hello octet", "hello udp"]);
    drop(conn);

    r.restart().await;
    assert_eq!(
        (r.tcp_port(), r.udp_port()),
        (tcp, udp),
        "same ports after restart"
    );
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", tcp))
        .await
        .expect("connect after restart");
    conn.write_all(b"after restart\n").await.expect("write");
    let lines = r.wait_for_lines(4, super::support::PATIENCE).await;
    assert_eq!(lines[3], "after restart");
    r.stop().await;
    assert!(!r.is_running());
}

#[test]
fn rsyslogd_is_installed() {
    let v = rsyslogd_version();
    assert!(
        v.starts_with("rsyslogd"),
        "unexpected `rsyslogd -v` output: {v}"
    );
}
