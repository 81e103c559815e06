//! Awkward input arrives as specified: invalid UTF-8, NUL and control bytes, CRLF, a
//! 3 MB line in marked parts, a partial line completed later, a Java stack trace.

use std::io::Write;
use std::time::Duration;

use klaxon_tests::agent::{Daemon, eventually, stream_messages};

use crate::support::stack;

fn append(path: &std::path::Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
    file.write_all(bytes).expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_lines_arrive_as_specified() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = dir.path().join("raw.log");
    let java = dir.path().join("java.log");
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"state_dir = "{state}"
instance_id = "i-test"

[[logs]]
path = "{raw}"
group = "/test/raw"
stream = "{{file}}"

[[logs]]
path = "{java}"
group = "/test/java"
multiline_start = '^\d{{4}}-\d{{2}}-\d{{2}} '
"#,
            state = dir.path().join("state").display(),
            raw = raw.display(),
            java = java.display(),
        ),
    )
    .expect("write config");
    let long_line = "L".repeat(3_000_000);
    append(&raw, b"bad \xff\xfe utf8\nnul\x00ctl\x07\x1b[0m\ncrlf line\r\n\n");
    append(&raw, format!("{long_line}\n").as_bytes());
    append(&raw, b"partial start");
    append(
        &java,
        b"2026-11-26 10:00:00 ERROR boom\njava.lang.IllegalStateException: bad\n\tat com.shop.Checkout.pay(Checkout.java:42)\n\tat com.shop.Api.handle(Api.java:7)\n2026-11-26 10:00:01 INFO next\n",
    );
    let agent = Daemon::start(&stack, &agent_config, &dir.path().join("agent.log"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    append(&raw, b" end\n");

    let piece = 262_144 - "[klaxon: part 9999999/9999999] ".len();
    let parts = long_line.len().div_ceil(piece);
    let raw_complete = eventually(Duration::from_secs(30), || async {
        stream_messages(&logs, "/test/raw", "raw.log").await.len() == 3 + parts + 1
    })
    .await;
    assert!(raw_complete, "raw.log not shipped:\n{}", agent.log());
    let got = stream_messages(&logs, "/test/raw", "raw.log").await;
    assert_eq!(got[..3], ["bad \u{fffd}\u{fffd} utf8", "nul\0ctl\u{7}\u{1b}[0m", "crlf line"]);
    let mut rejoined = String::new();
    for (index, part) in (1..).zip(&got[3..3 + parts]) {
        let marker = format!("[klaxon: part {index}/{parts}] ");
        rejoined.push_str(
            part.strip_prefix(&marker).unwrap_or_else(|| panic!("part {index} unmarked")),
        );
        assert!(part.len() <= 262_144);
    }
    assert!(rejoined == long_line, "the 3 MB line did not rejoin");
    assert_eq!(got[3 + parts], "partial start end", "the partial line waited for its end");

    let java_complete = eventually(Duration::from_secs(30), || async {
        stream_messages(&logs, "/test/java", "i-test").await.len() == 2
    })
    .await;
    assert!(java_complete, "java.log not shipped:\n{}", agent.log());
    assert_eq!(
        stream_messages(&logs, "/test/java", "i-test").await,
        [
            "2026-11-26 10:00:00 ERROR boom\njava.lang.IllegalStateException: bad\n\tat com.shop.Checkout.pay(Checkout.java:42)\n\tat com.shop.Api.handle(Api.java:7)",
            "2026-11-26 10:00:01 INFO next",
        ]
    );
    assert!(agent.terminate().success());
    assert_eq!(stack.stats().expect("stats").rejected_total, 0);
}
