//! Tests of the CLI parsers (the `procman_cli` library: job lines, words, durations, joblog).

use std::path::PathBuf;
use std::time::Duration;

use procman_cli::*;
use proptest::prelude::*;

fn words(s: &str) -> Vec<String> {
    split_words(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

// --- split_words -----------------------------------------------------------

#[test]
fn split_plain_and_whitespace() {
    assert_eq!(words(""), Vec::<String>::new());
    assert_eq!(words("   \t "), Vec::<String>::new());
    assert_eq!(words("a"), ["a"]);
    assert_eq!(words("  a  b\tc \r"), ["a", "b", "c"]);
    assert_eq!(words("a\nb"), ["a", "b"]);
    // Non-ASCII whitespace is part of a word.
    assert_eq!(words("a\u{a0}b é"), ["a\u{a0}b", "é"]);
}

#[test]
fn split_single_quotes() {
    assert_eq!(words("'a b'"), ["a b"]);
    assert_eq!(words(r"'a\b'"), [r"a\b"]);
    assert_eq!(words(r#"'"$x`'"#), [r#""$x`"#]);
    assert_eq!(words("''"), [""]);
    assert_eq!(words("'' ''"), ["", ""]);
    assert_eq!(words(r"'it'\''s'"), ["it's"]);
    assert_eq!(words("'a\nb'"), ["a\nb"]);
    assert_eq!(words("'#x'"), ["#x"]);
}

#[test]
fn split_double_quotes() {
    assert_eq!(words(r#""a b""#), ["a b"]);
    assert_eq!(words(r#""""#), [""]);
    assert_eq!(words(r#""\\ \" \$ \`""#), [r#"\ " $ `"#]);
    // Backslash before anything else stays.
    assert_eq!(words(r#""\a\n\'""#), [r"\a\n\'"]);
    // Backslash-newline is removed inside double quotes.
    assert_eq!(words("\"a\\\nb\""), ["ab"]);
    assert_eq!(words(r#""it's""#), ["it's"]);
    assert_eq!(words(r#""$HOME""#), ["$HOME"]);
}

#[test]
fn split_backslash_outside_quotes() {
    assert_eq!(words(r"a\ b"), ["a b"]);
    assert_eq!(words(r"\'"), ["'"]);
    assert_eq!(words(r"\\"), [r"\"]);
    assert_eq!(words(r"\|"), ["|"]);
    assert_eq!(words(r"\#x"), ["#x"]);
    assert_eq!(words("a\\\nb"), ["ab"]);
    assert_eq!(words("a \\\n b"), ["a", "b"]);
    assert_eq!(words("\\\n"), Vec::<String>::new());
    assert_eq!(words("\\\n#c"), Vec::<String>::new());
}

#[test]
fn split_concatenation() {
    assert_eq!(words(r#"a'b'"c"d"#), ["abcd"]);
    assert_eq!(words(r#"--opt="x y""#), ["--opt=x y"]);
    assert_eq!(words(r"''a"), ["a"]);
}

#[test]
fn split_comments() {
    assert_eq!(words("# all comment"), Vec::<String>::new());
    assert_eq!(words("a # b c"), ["a"]);
    assert_eq!(words("a#b"), ["a#b"]);
    assert_eq!(words("''#b"), ["#b"]);
    assert_eq!(words("a #'unterminated"), ["a"]);
    assert_eq!(words("a # c\nb"), ["a", "b"]);
}

#[test]
fn split_no_expansion() {
    assert_eq!(
        words("echo $HOME ~ *.mtz {a,b} `date` $x"),
        ["echo", "$HOME", "~", "*.mtz", "{a,b}", "`date`", "$x"]
    );
}

#[test]
fn split_errors_with_columns() {
    let e = split_words("echo 'abc").unwrap_err();
    assert_eq!(e, SplitError::UnterminatedSingleQuote { column: 6 });
    assert!(e.to_string().contains("column 6"), "{e}");

    assert_eq!(
        split_words(r#"ab "c"#).unwrap_err(),
        SplitError::UnterminatedDoubleQuote { column: 4 }
    );
    assert_eq!(
        split_words(r#""abc\"#).unwrap_err(),
        SplitError::UnterminatedDoubleQuote { column: 1 }
    );
    assert_eq!(
        split_words(r"abc \").unwrap_err(),
        SplitError::TrailingBackslash { column: 5 }
    );
    // Columns count characters, not bytes.
    assert_eq!(split_words("éé 'x").unwrap_err().column(), 4);
    for (line, op, column) in [
        ("a | b", '|', 3),
        ("a > out", '>', 3),
        ("a>out", '>', 2),
        ("a; b", ';', 2),
        ("a &", '&', 3),
        ("(a)", '(', 1),
        ("a <in", '<', 3),
    ] {
        let e = split_words(line).unwrap_err();
        assert_eq!(
            e,
            SplitError::UnquotedOperator {
                operator: op,
                column
            },
            "{line}"
        );
        assert!(e.to_string().contains("not run by a shell"), "{e}");
    }
    // Quoted operators are fine.
    assert_eq!(words(r"'|' '>' \; '&&'"), ["|", ">", ";", "&&"]);
}

#[test]
fn quoting() {
    assert_eq!(quote_word("abc-_./,:@%+=9"), "abc-_./,:@%+=9");
    assert_eq!(quote_word(""), "''");
    assert_eq!(quote_word("a b"), "'a b'");
    assert_eq!(quote_word("#x"), "'#x'");
    assert_eq!(quote_word("~"), "'~'");
    assert_eq!(quote_word("'"), r"''\'''");
    assert_eq!(join_words(["a", "b c", ""]), "a 'b c' ''");
    assert_eq!(join_words(Vec::<String>::new()), "");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn quote_split_round_trip(ws in proptest::collection::vec(any::<String>(), 0..6)) {
        prop_assert_eq!(split_words(&join_words(&ws)).unwrap(), ws);
    }

    #[test]
    fn quote_split_round_trip_shellish(
        ws in proptest::collection::vec("[a-z'\"\\\\ #$|\t\n]{0,6}", 0..6)
    ) {
        prop_assert_eq!(split_words(&join_words(&ws)).unwrap(), ws);
    }

    #[test]
    fn split_never_panics(s in "[a-z'\"\\\\ #|\n]{0,20}") {
        if let Ok(ws) = split_words(&s) {
            prop_assert_eq!(split_words(&join_words(&ws)).unwrap(), ws);
        }
    }
}

// --- parse_duration --------------------------------------------------------

#[test]
fn durations_ok() {
    let ms = Duration::from_millis;
    for (s, d) in [
        ("0", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("0.0", Duration::ZERO),
        ("1", ms(1000)),
        ("1.5", ms(1500)),
        ("1.", ms(1000)),
        (".5", ms(500)),
        ("+2", ms(2000)),
        ("  3s ", ms(3000)),
        ("2m", ms(120_000)),
        ("1.5h", ms(5_400_000)),
        ("1d", ms(86_400_000)),
        ("0.5d", ms(43_200_000)),
        ("250ms", ms(250)),
        ("0.5ms", Duration::from_micros(500)),
        ("007", ms(7000)),
        ("1.000000001", Duration::new(1, 1)),
    ] {
        assert_eq!(parse_duration(s), Ok(d), "{s:?}");
    }
    // Rounded up to whole nanoseconds: positive never becomes zero.
    assert_eq!(parse_duration("0.0000000001"), Ok(Duration::new(0, 1)));
    assert_eq!(parse_duration("1.0000000001"), Ok(Duration::new(1, 1)));
    assert_eq!(
        parse_duration("0.0000000000000000000000000001"),
        Ok(Duration::new(0, 1))
    );
    // Exact decimal arithmetic: 0.1m is 6 s, not 5.999...
    assert_eq!(parse_duration("0.1m"), Ok(Duration::from_secs(6)));
    // The largest representable whole number of seconds.
    assert_eq!(
        parse_duration(&u64::MAX.to_string()),
        Ok(Duration::from_secs(u64::MAX))
    );
}

#[test]
fn durations_rejected() {
    use DurationError::*;
    assert_eq!(parse_duration(""), Err(Empty));
    assert_eq!(parse_duration("  "), Err(Empty));
    assert!(matches!(parse_duration("-1"), Err(Negative(_))));
    assert!(matches!(parse_duration("-0"), Err(Negative(_))));
    assert!(matches!(parse_duration("-.5s"), Err(Negative(_))));
    for s in ["nan", "NaN", "inf", "+inf", "Infinity", "infs"] {
        assert!(matches!(parse_duration(s), Err(NotFinite(_))), "{s}");
    }
    for s in [
        ".", "s", "ms", "1.2.3", "abc", "-", "--1", "1 s", "+", "++1", "0x10",
    ] {
        assert!(
            matches!(parse_duration(s), Err(BadNumber(_) | BadSuffix { .. })),
            "{s}: {:?}",
            parse_duration(s)
        );
    }
    for (s, suffix) in [
        ("1S", "S"),
        ("1sec", "sec"),
        ("1e3", "e3"),
        ("1h30m", "h30m"),
        ("5 ", ""),
    ] {
        match parse_duration(s) {
            Err(BadSuffix { suffix: got, .. }) => assert_eq!(got, suffix, "{s}"),
            Ok(d) if suffix.is_empty() => assert_eq!(d, Duration::from_secs(5)),
            other => panic!("{s}: {other:?}"),
        }
    }
    let too_big = format!("{}", u128::from(u64::MAX) + 1);
    assert!(matches!(parse_duration(&too_big), Err(Overflow(_))));
    assert!(matches!(
        parse_duration("213503982334602d"),
        Err(Overflow(_))
    ));
    assert_eq!(
        parse_duration("213503982334601d"),
        Ok(Duration::from_secs(213503982334601 * 86400))
    );
    assert!(matches!(parse_duration(&"9".repeat(40)), Err(Overflow(_))));
    assert!(matches!(parse_duration(&"9".repeat(31)), Err(Overflow(_))));
    // Leading zeros do not count towards overflow.
    assert_eq!(
        parse_duration(&format!("{}1", "0".repeat(100))),
        Ok(Duration::from_secs(1))
    );
    // Messages say what is wrong.
    assert!(parse_duration("-1")
        .unwrap_err()
        .to_string()
        .contains("negative"));
    assert!(parse_duration("1x")
        .unwrap_err()
        .to_string()
        .contains("suffix \"x\""));
    assert!(parse_duration("")
        .unwrap_err()
        .to_string()
        .contains("empty"));
}

/// Issue 19: the durations the CLI refuses say why, and everything up to `Duration::MAX` parses
/// (the library takes one too long for the clock as no limit).
#[test]
fn durations_at_and_past_the_largest() {
    use DurationError::*;
    assert_eq!(
        parse_duration("18446744073709551615.999999999"),
        Ok(Duration::MAX)
    );
    assert_eq!(
        parse_duration("18446744073709551615.9999999990000"),
        Ok(Duration::MAX)
    );
    for s in [
        "18446744073709551615.9999999991",
        "18446744073709551616",
        "99999999999999999999d",
        "307445734561825861m",
    ] {
        let e = parse_duration(s).unwrap_err();
        assert!(matches!(e, Overflow(_)), "{s}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("too large") && msg.contains("at most 18446744073709551615.999999999"),
            "{msg}"
        );
    }
    for (s, exponent) in [("1e99", "e99"), ("1E+6", "E+6"), ("2.5e-3s", "e-3s")] {
        let e = parse_duration(s).unwrap_err();
        assert!(
            matches!(&e, BadSuffix { suffix, .. } if suffix == exponent),
            "{s}: {e:?}"
        );
        assert!(e.to_string().contains("exponents"), "{e}");
    }
    // Not an exponent: the plain message.
    let e = parse_duration("1e").unwrap_err().to_string();
    assert!(
        e.contains("unknown suffix \"e\"") && !e.contains("exponent"),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn duration_millis_exact(n in 0u64..1u64 << 40) {
        prop_assert_eq!(parse_duration(&format!("{n}ms")).unwrap(), Duration::from_millis(n));
        let secs = format!("{}.{:03}", n / 1000, n % 1000);
        prop_assert_eq!(parse_duration(&secs).unwrap(), Duration::from_millis(n));
    }

    #[test]
    fn duration_never_panics(s in "[-+0-9.a-z ]{0,12}") {
        let _ = parse_duration(&s);
    }
}

// --- parse_job_line --------------------------------------------------------

fn job(line: &str) -> BatchJob {
    parse_job_line(7, line)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .unwrap_or_else(|| panic!("{line}: no job"))
}

fn job_err(line: &str) -> JobLineError {
    let e = parse_job_line(42, line).expect_err(line);
    assert_eq!(e.line, 42);
    assert!(e.to_string().starts_with("line 42: "), "{e}");
    e
}

#[test]
fn job_blank_and_comments() {
    for line in [
        "",
        "   ",
        "\t",
        "# x",
        "   # {\"program\": 1}",
        "\r",
        "\\\n",
    ] {
        assert_eq!(parse_job_line(1, line), Ok(None), "{line:?}");
    }
}

#[test]
fn job_shell_words() {
    let j = job(r#"  ctruncate -hklin "my data.mtz" -colin '/*/*/[IMEAN,SIGIMEAN]' # note"#);
    assert_eq!(
        j,
        BatchJob {
            line: 7,
            program: "ctruncate".into(),
            args: vec![
                "-hklin".into(),
                "my data.mtz".into(),
                "-colin".into(),
                "/*/*/[IMEAN,SIGIMEAN]".into()
            ],
            ..BatchJob::default()
        }
    );
    assert_eq!(job("true\r\n").args, Vec::<String>::new());
    assert_eq!(job("'/opt/my prog/bin/x'").program, "/opt/my prog/bin/x");
}

#[test]
fn job_shell_word_errors() {
    let e = job_err("prog 'oops");
    assert_eq!(
        e.kind,
        JobLineErrorKind::Words(SplitError::UnterminatedSingleQuote { column: 6 })
    );
    assert_eq!(
        e.to_string(),
        "line 42: unterminated single quote opened at column 6"
    );
    assert_eq!(
        job_err("'' arg").kind,
        JobLineErrorKind::Empty("program".into())
    );
    assert!(matches!(
        job_err("prog > out").kind,
        JobLineErrorKind::Words(SplitError::UnquotedOperator { .. })
    ));
    assert_eq!(
        job_err("prog a\0b").kind,
        JobLineErrorKind::Nul("args[0]".into())
    );
}

#[test]
fn job_json_full() {
    let j = job(
        r#" {"program": "refmac5", "args": ["HKLIN", "a b.mtz"], "input": "in.txt",
            "log": "out.log", "err": "err.log", "cwd": "/tmp/job 1",
            "env": {"CCP4": "/opt/ccp4", "EMPTY": ""}, "timeout": "1.5h",
            "priority": -3, "after": ["prep", "12"], "id": "refine", "retries": 2} "#,
    );
    assert_eq!(j.line, 7);
    assert_eq!(j.program, "refmac5");
    assert_eq!(j.args, ["HKLIN", "a b.mtz"]);
    assert_eq!(j.input, Some(PathBuf::from("in.txt")));
    assert_eq!(j.log, Some(PathBuf::from("out.log")));
    assert_eq!(j.err, Some(PathBuf::from("err.log")));
    assert_eq!(j.cwd, Some(PathBuf::from("/tmp/job 1")));
    assert_eq!(j.env.len(), 2);
    assert_eq!(j.env["CCP4"], "/opt/ccp4");
    assert_eq!(j.env["EMPTY"], "");
    assert_eq!(j.timeout, Some(Duration::from_secs(5400)));
    assert_eq!(j.priority, Some(-3));
    assert_eq!(j.after, ["prep", "12"]);
    assert_eq!(j.name.as_deref(), Some("refine"));
    assert_eq!(j.retries, Some(2));
}

#[test]
fn job_json_minimal_and_variants() {
    let j = job(r#"{"program":"true"}"#);
    assert_eq!(
        j,
        BatchJob {
            line: 7,
            program: "true".into(),
            ..BatchJob::default()
        }
    );
    assert_eq!(
        job(r#"{"program":"x","name":"n"}"#).name.as_deref(),
        Some("n")
    );
    assert_eq!(
        job(r#"{"program":"x","timeout":2.5}"#).timeout,
        Some(Duration::from_millis(2500))
    );
    assert_eq!(
        job(r#"{"program":"x","timeout":0}"#).timeout,
        Some(Duration::ZERO)
    );
    assert_eq!(
        job(r#"{"program":"x","timeout":18446744073709551615}"#).timeout,
        Some(Duration::from_secs(u64::MAX))
    );
    // null is the same as absent.
    assert_eq!(
        job(r#"{"program":"x","args":null,"timeout":null,"id":null,"name":"n"}"#),
        BatchJob {
            line: 7,
            program: "x".into(),
            name: Some("n".into()),
            ..BatchJob::default()
        }
    );
    assert_eq!(
        job(r#"{"program":"x","args":[]}"#).args,
        Vec::<String>::new()
    );
    assert_eq!(job("{\"program\":\"x\"}\r\n").program, "x");
}

#[test]
fn job_json_errors() {
    use JobLineErrorKind::*;
    let wrong = |line: &str, field: &str, found: &str| match job_err(line).kind {
        WrongType {
            field: f,
            found: got,
            ..
        } => {
            assert_eq!(f, field, "{line}");
            assert_eq!(got, found, "{line}");
        }
        other => panic!("{line}: {other:?}"),
    };
    assert!(matches!(job_err("{").kind, Json(_)));
    assert!(matches!(job_err(r#"{"program":"x"} extra"#).kind, Json(_)));
    assert!(matches!(job_err(r#"{"program":"x",}"#).kind, Json(_)));
    assert_eq!(job_err("{}").kind, MissingProgram);
    assert_eq!(job_err(r#"{"args":["a"]}"#).kind, MissingProgram);
    let e = job_err(r#"{"program":"x","tiemout":"5"}"#);
    assert_eq!(e.kind, UnknownField("tiemout".into()));
    assert!(e.to_string().contains("\"tiemout\""), "{e}");
    assert_eq!(
        job_err(r#"{"program":"x","bogus":null}"#).kind,
        UnknownField("bogus".into())
    );
    wrong(r#"{"program":1}"#, "program", "a number");
    wrong(r#"{"program":"x","args":"a b"}"#, "args", "a string");
    wrong(r#"{"program":"x","args":["a",1]}"#, "args[1]", "a number");
    wrong(r#"{"program":"x","after":[3]}"#, "after[0]", "a number");
    wrong(r#"{"program":"x","env":["A=1"]}"#, "env", "an array");
    wrong(r#"{"program":"x","env":{"A":1}}"#, "env.A", "a number");
    wrong(r#"{"program":"x","log":true}"#, "log", "a boolean");
    wrong(r#"{"program":"x","timeout":[]}"#, "timeout", "an array");
    wrong(r#"{"program":"x","priority":"1"}"#, "priority", "a string");
    wrong(
        r#"{"program":"x","priority":1.5}"#,
        "priority",
        "a non-integer number",
    );
    wrong(r#"{"program":"x","retries":{}}"#, "retries", "an object");
    wrong(r#"{"program":"x","id":5}"#, "id", "a number");
    assert_eq!(job_err(r#"{"program":""}"#).kind, Empty("program".into()));
    assert_eq!(
        job_err(r#"{"program":"x","cwd":""}"#).kind,
        Empty("cwd".into())
    );
    assert_eq!(
        job_err(r#"{"program":"x","name":""}"#).kind,
        Empty("name".into())
    );
    assert_eq!(
        job_err(r#"{"program":"x","after":["a",""]}"#).kind,
        Empty("after[1]".into())
    );
    assert_eq!(
        job_err(r#"{"program":"a\u0000"}"#).kind,
        Nul("program".into())
    );
    assert_eq!(
        job_err(r#"{"program":"x","env":{"A":"\u0000"}}"#).kind,
        Nul("env.A".into())
    );
    assert_eq!(
        job_err(r#"{"program":"x","env":{"A=B":"1"}}"#).kind,
        BadEnvName("A=B".into())
    );
    assert_eq!(
        job_err(r#"{"program":"x","env":{"":"1"}}"#).kind,
        BadEnvName("".into())
    );
    assert_eq!(
        job_err(r#"{"program":"x","retries":-1}"#).kind,
        OutOfRange {
            field: "retries".into(),
            value: "-1".into()
        }
    );
    assert_eq!(
        job_err(r#"{"program":"x","priority":2147483648}"#).kind,
        OutOfRange {
            field: "priority".into(),
            value: "2147483648".into()
        }
    );
    assert!(matches!(
        job_err(r#"{"program":"x","timeout":"-5s"}"#).kind,
        Timeout(DurationError::Negative(_))
    ));
    assert!(matches!(
        job_err(r#"{"program":"x","timeout":"5 min"}"#).kind,
        Timeout(DurationError::BadSuffix { .. })
    ));
    assert_eq!(
        job_err(r#"{"program":"x","timeout":-1}"#).kind,
        TimeoutSeconds("-1".into())
    );
    assert!(matches!(
        job_err(r#"{"program":"x","timeout":1e300}"#).kind,
        TimeoutSeconds(_)
    ));
    // Finite but too large: the message gives the largest, not "must be finite".
    let e = job_err(r#"{"program":"x","timeout":1e99}"#).to_string();
    assert!(
        e.contains("1e+99") && e.contains("at most 18446744073709551615.999999999"),
        "{e}"
    );
    assert!(matches!(
        job_err(r#"{"program":"x","timeout":"1e99"}"#).kind,
        Timeout(DurationError::BadSuffix { .. })
    ));
    assert_eq!(
        job_err(r#"{"program":"x","id":"a","name":"b"}"#).kind,
        IdAndName
    );
    // serde_json's own nesting limit keeps deep input from overflowing the stack.
    let deep = format!(
        "{{\"program\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(job_err(&deep).kind, Json(_)));
}

// --- lines / parse_job_file ------------------------------------------------

#[test]
fn line_reader() {
    let data: &[u8] = b"\xef\xbb\xbfa\r\nb\n\xffbad\nlast";
    let got: Vec<_> = lines(data).collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].as_ref().unwrap(), &(1, "a".to_owned()));
    assert_eq!(got[1].as_ref().unwrap(), &(2, "b".to_owned()));
    let e = got[2].as_ref().unwrap_err();
    assert_eq!(e.line, 3);
    assert!(matches!(e.kind, LineErrorKind::NotUtf8 { byte: 1 }));
    assert!(e.to_string().contains("line 3"), "{e}");
    assert_eq!(got[3].as_ref().unwrap(), &(4, "last".to_owned()));
    assert_eq!(lines(&b""[..]).count(), 0);
    assert_eq!(lines(&b"\n"[..]).count(), 1);
}

#[test]
fn job_file() {
    let text = "# jobs\nprep a\n\n{\"program\":\"run\",\"after\":[\"p\"]}\n";
    let jobs = parse_job_file(text.as_bytes()).unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!((jobs[0].line, jobs[0].program.as_str()), (2, "prep"));
    assert_eq!((jobs[1].line, jobs[1].program.as_str()), (4, "run"));

    let e = parse_job_file("ok\n\nbad 'x\n".as_bytes()).unwrap_err();
    assert!(matches!(&e, JobFileError::Line(l) if l.line == 3), "{e:?}");
    assert!(e.to_string().starts_with("line 3: "), "{e}");

    let e = parse_job_file(&b"ok\n\xc3\n"[..]).unwrap_err();
    assert!(matches!(&e, JobFileError::Read(l) if l.line == 2), "{e:?}");
}

// --- joblog ---------------------------------------------------------------

fn entry() -> JoblogEntry {
    JoblogEntry {
        seq: 1,
        host: JoblogEntry::LOCAL_HOST.into(),
        start_time: 1795836238.082,
        runtime: 0.002,
        send: 0,
        receive: 0,
        exitval: 0,
        signal: 0,
        command: "true".into(),
    }
}

#[test]
fn joblog_header() {
    assert_eq!(
        JoblogEntry::HEADER,
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
    );
    assert_eq!(
        parse_joblog_line(JoblogEntry::HEADER),
        Err(JoblogError::Header)
    );
    assert_eq!(
        parse_joblog_line(&format!("{}\n", JoblogEntry::HEADER)),
        Err(JoblogError::Header)
    );
}

#[test]
fn joblog_format_matches_gnu_parallel() {
    // Lines written by GNU parallel 20221122 (`parallel --joblog`).
    assert_eq!(
        entry().to_line(),
        "1\t:\t1795836238.082\t     0.002\t0\t0\t0\t0\ttrue"
    );
    let killed = JoblogEntry {
        seq: 5,
        start_time: 1795836238.097,
        signal: 9,
        command: "kill -9 $$".into(),
        ..entry()
    };
    assert_eq!(
        killed.to_line(),
        "5\t:\t1795836238.097\t     0.002\t0\t0\t0\t9\tkill -9 $$"
    );
    let tab = JoblogEntry {
        seq: 4,
        start_time: 1795836238.091,
        runtime: 0.001,
        receive: 3,
        command: "printf \"a\\tb\"".into(),
        ..entry()
    };
    assert_eq!(
        tab.to_line(),
        "4\t:\t1795836238.091\t     0.001\t0\t3\t0\t0\tprintf \"a\\tb\""
    );
    // Width 10 is a minimum; longer runtimes are not cut.
    let long = JoblogEntry {
        runtime: 1234567.5,
        exitval: -1,
        signal: 15,
        ..entry()
    };
    assert_eq!(
        long.to_line(),
        "1\t:\t1795836238.082\t1234567.500\t0\t0\t-1\t15\ttrue"
    );
    // Newlines in commands become NUL, as GNU parallel writes them.
    let nl = JoblogEntry {
        command: "echo a\nb".into(),
        ..entry()
    };
    assert!(nl.to_line().ends_with("\techo a\0b"));
    assert_eq!(parse_joblog_line(&nl.to_line()).unwrap(), nl);
}

#[test]
fn joblog_parse() {
    let e = parse_joblog_line("3\t:\t1795836238.087\t     0.205\t0\t0\t0\t0\tsleep 0.2\n").unwrap();
    assert_eq!(
        e,
        JoblogEntry {
            seq: 3,
            start_time: 1795836238.087,
            runtime: 0.205,
            command: "sleep 0.2".into(),
            ..entry()
        }
    );
    // The command keeps its tabs and may be empty.
    let e = parse_joblog_line("1\thost\t0\t0\t0\t0\t0\t0\ta\tb\t").unwrap();
    assert_eq!(e.command, "a\tb\t");
    assert_eq!(e.host, "host");
    assert_eq!(
        parse_joblog_line("1\t:\t0\t0\t0\t0\t0\t0\t")
            .unwrap()
            .command,
        ""
    );
}

#[test]
fn joblog_errors() {
    assert_eq!(
        parse_joblog_line(""),
        Err(JoblogError::TooFewFields { found: 1 })
    );
    assert_eq!(
        parse_joblog_line("1\t:\t0\t0\t0\t0\t0\t0"),
        Err(JoblogError::TooFewFields { found: 8 })
    );
    assert_eq!(
        parse_joblog_line("1\t:\t0\t0\t0\t0\t0\t0\ta\nb"),
        Err(JoblogError::EmbeddedNewline)
    );
    for (line, field) in [
        ("x\t:\t0\t0\t0\t0\t0\t0\tc", "Seq"),
        ("-1\t:\t0\t0\t0\t0\t0\t0\tc", "Seq"),
        ("1\t:\tnan\t0\t0\t0\t0\t0\tc", "Starttime"),
        ("1\t:\t0\tinf\t0\t0\t0\t0\tc", "JobRuntime"),
        ("1\t:\t0\t0\t-1\t0\t0\t0\tc", "Send"),
        ("1\t:\t0\t0\t0\t1.5\t0\t0\tc", "Receive"),
        ("1\t:\t0\t0\t0\t0\t99999999999\t0\tc", "Exitval"),
        ("1\t:\t0\t0\t0\t0\t0\t\tc", "Signal"),
    ] {
        match parse_joblog_line(line) {
            Err(JoblogError::BadField { field: f, .. }) => assert_eq!(f, field, "{line}"),
            other => panic!("{line}: {other:?}"),
        }
    }
    let msg = parse_joblog_line("1\t:\t0\t0\t0\t0\tbad\t0\tc")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("Exitval") && msg.contains("\"bad\""), "{msg}");
}

fn arb_entry() -> impl Strategy<Value = JoblogEntry> {
    (
        any::<u64>(),
        "[^\t\n]{0,8}",
        0u64..4_000_000_000_000,
        0u64..1_000_000_000_000,
        any::<(u64, u64, i32, i32)>(),
        "[^\0]{0,20}",
    )
        .prop_map(
            |(seq, host, start_ms, run_ms, (send, receive, exitval, signal), command)| {
                JoblogEntry {
                    seq,
                    host,
                    start_time: start_ms as f64 / 1000.0,
                    runtime: run_ms as f64 / 1000.0,
                    send,
                    receive,
                    exitval,
                    signal,
                    command,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn joblog_round_trip(e in arb_entry()) {
        let line = e.to_line();
        prop_assert_eq!(line.matches('\n').count(), 0);
        let back = parse_joblog_line(&line).unwrap();
        prop_assert_eq!(back.to_line(), line);
        prop_assert_eq!(back, e);
    }

    #[test]
    fn joblog_round_trip_any_times(e in arb_entry(), start in any::<f64>(), run in any::<f64>()) {
        prop_assume!(start.is_finite() && run.is_finite());
        let e = JoblogEntry { start_time: start, runtime: run, ..e };
        let line = e.to_line();
        let back = parse_joblog_line(&line).unwrap();
        // Times are kept to the millisecond; formatting is a fixed point.
        prop_assert_eq!(back.to_line(), line);
        prop_assert!((back.start_time - start).abs() <= 0.0005 + start.abs() * 1e-15);
        prop_assert_eq!(back.command, e.command);
    }
}

#[test]
fn split_words_bytes_keeps_the_bytes_of_a_line_that_is_not_utf8() {
    use procman_cli::{split_words_bytes, SplitError};
    use std::os::unix::ffi::OsStrExt;
    let words = split_words_bytes(b"cp 'caf\xe9 au lait.mtz' out\\ \xff \"q\xfe\"").unwrap();
    let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    assert_eq!(
        words,
        [&b"cp"[..], b"caf\xe9 au lait.mtz", b"out \xff", b"q\xfe"]
    );
    // UTF-8 input: exactly split_words.
    let words = split_words_bytes("a 'b c' é".as_bytes()).unwrap();
    assert_eq!(words, ["a", "b c", "é"]);
    // The same errors, with columns counting an invalid byte as one.
    assert_eq!(
        split_words_bytes(b"\xff 'open"),
        Err(SplitError::UnterminatedSingleQuote { column: 3 })
    );
    assert_eq!(
        split_words_bytes(b"\xff | x"),
        Err(SplitError::UnquotedOperator {
            operator: '|',
            column: 3
        })
    );
    // The reserved characters cannot appear in a line that is not UTF-8.
    assert!(matches!(
        split_words_bytes(
            "\u{10FF41} \u{0}"
                .as_bytes()
                .iter()
                .chain(b"\xff")
                .copied()
                .collect::<Vec<_>>()
                .as_slice()
        ),
        Err(SplitError::Unrepresentable { column: 1 })
    ));
}

#[test]
fn json_cpus_and_memory_are_read_and_checked() {
    use JobLineErrorKind::{OutOfRange, WrongType};
    let j = job(r#"{"program": "refmac5", "cpus": 4, "memory": "8G"}"#);
    assert_eq!((j.cpus, j.memory), (Some(4), Some(8 << 30)));
    let j = job(r#"{"program": "x", "memory": 1048576}"#);
    assert_eq!((j.cpus, j.memory), (None, Some(1 << 20)));
    assert_eq!(
        job(r#"{"program": "x", "memory": " 512mib "}"#).memory,
        Some(512 << 20)
    );
    assert_eq!(job("refmac5 4 8G").cpus, None);
    let range = |field: &str, value: &str| OutOfRange {
        field: field.into(),
        value: value.into(),
    };
    assert_eq!(
        job_err(r#"{"program":"x","cpus":0}"#).kind,
        range("cpus", "0")
    );
    assert_eq!(
        job_err(r#"{"program":"x","cpus":-2}"#).kind,
        range("cpus", "-2")
    );
    assert_eq!(
        job_err(r#"{"program":"x","memory":0}"#).kind,
        range("memory", "0")
    );
    assert_eq!(
        job_err(r#"{"program":"x","memory":"8X"}"#).kind,
        range("memory", "8X")
    );
    assert_eq!(
        job_err(r#"{"program":"x","memory":"0G"}"#).kind,
        range("memory", "0G")
    );
    assert_eq!(
        job_err(r#"{"program":"x","memory":"99999999999T"}"#).kind,
        range("memory", "99999999999T")
    );
    assert!(matches!(
        job_err(r#"{"program":"x","cpus":"4"}"#).kind,
        WrongType { .. }
    ));
    assert!(matches!(
        job_err(r#"{"program":"x","memory":[1]}"#).kind,
        WrongType { .. }
    ));
}
