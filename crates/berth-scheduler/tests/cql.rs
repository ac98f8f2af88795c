//! Cluster query language: truth tables, error positions, no-panic fuzzing.

use std::collections::BTreeMap;

use berth_scheduler::cql::{self, InstanceView, parse_date_millis};
use proptest::prelude::*;

struct Inst {
    attrs: BTreeMap<&'static str, &'static str>,
    connected: bool,
    version: Option<&'static str>,
    ec2: Option<&'static str>,
    registered: i64,
    running: u64,
    groups: Vec<&'static str>,
}

impl InstanceView for Inst {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).copied()
    }
    fn agent_connected(&self) -> bool {
        self.connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.version
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.ec2
    }
    fn registered_at_millis(&self) -> i64 {
        self.registered
    }
    fn running_tasks_count(&self) -> u64 {
        self.running
    }
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.groups.iter().any(|g| f(g))
    }
}

fn web() -> Inst {
    Inst {
        attrs: [
            ("ecs.instance-type", "t2.small"),
            ("ecs.availability-zone", "us-east-1a"),
            ("ecs.os-type", "linux"),
            ("stack", "prod"),
            ("cores", "8"),
        ]
        .into_iter()
        .collect(),
        connected: true,
        version: Some("1.14.5"),
        ec2: Some("i-abcd1234"),
        registered: parse_date_millis("2018-06-18T22:28:28+00:00").unwrap(),
        running: 1,
        groups: vec!["service:production"],
    }
}

fn gpu() -> Inst {
    Inst {
        attrs: [
            ("ecs.instance-type", "g2.2xlarge"),
            ("ecs.availability-zone", "us-east-1d"),
            ("cores", "16"),
        ]
        .into_iter()
        .collect(),
        connected: false,
        version: Some("1.9.0"),
        ec2: Some("i-wxyx7890"),
        registered: parse_date_millis("2017-01-01").unwrap(),
        running: 0,
        groups: vec![],
    }
}

#[test]
fn truth_table() {
    // (expression, on web, on gpu)
    let cases: &[(&str, bool, bool)] = &[
        ("attribute:ecs.instance-type == t2.small", true, false),
        ("attribute:ecs.instance-type equals t2.small", true, false),
        ("attribute:ecs.instance-type != t2.small", false, true),
        (
            "attribute:ecs.instance-type not_equals t2.small",
            false,
            true,
        ),
        (
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
            true,
            false,
        ),
        (
            "attribute:ecs.availability-zone not_in [us-east-1a, us-east-1b]",
            false,
            true,
        ),
        (
            "attribute:ecs.availability-zone !in [us-east-1a, us-east-1b]",
            false,
            true,
        ),
        ("attribute:ecs.instance-type =~ g2.*", false, true),
        ("attribute:ecs.instance-type matches g2.*", false, true),
        ("attribute:ecs.instance-type !~ g2.*", true, false),
        ("attribute:ecs.instance-type not_matches g2.*", true, false),
        // Full-match semantics: `g2` alone does not match `g2.2xlarge`.
        ("attribute:ecs.instance-type =~ g2", false, false),
        (
            "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d",
            false,
            false,
        ),
        (
            "attribute:ecs.instance-type =~ g2.* or attribute:ecs.availability-zone == us-east-1a",
            true,
            true,
        ),
        ("attribute:ecs.os-type exists", true, false),
        ("attribute:ecs.os-type !exists", false, true),
        ("attribute:ecs.os-type not_exists", false, true),
        // Missing attribute: positive comparisons false, negations true.
        ("attribute:ecs.os-type == linux", true, false),
        ("attribute:ecs.os-type != linux", false, true),
        // Numeric when both sides are numbers: 8 < 10 (lexically "8" > "10").
        ("attribute:cores < 10", true, false),
        ("attribute:cores >= 16", false, true),
        ("attribute:cores greater_than 8", false, true),
        ("attribute:cores greater_than_equal 8", true, true),
        ("attribute:cores less_than_equal 8", true, false),
        ("task:group == service:production", true, false),
        ("not(task:group == service:production)", false, true),
        ("!(task:group == service:production)", false, true),
        ("task:group != service:production", false, true),
        ("task:group exists", true, false),
        ("task:group in [service:production, family:x]", true, false),
        ("task:group =~ service:.*", true, false),
        ("runningTasksCount == 1", true, false),
        ("runningTasksCount == 0", false, true),
        ("runningTasksCount > 0", true, false),
        ("runningTasksCount in [0, 2]", false, true),
        ("agentVersion < 1.14.5", false, true),
        ("agentVersion <= 1.14.5", true, true),
        ("agentVersion > 1.10.0", true, false),
        ("agentVersion == 1.14.5", true, false),
        ("agentConnected == true", true, false),
        ("agentConnected == false", false, true),
        ("agentConnected != true", false, true),
        ("registeredAt < 2018-02-13", false, true),
        ("registeredAt > 2018-06-18", true, false),
        ("registeredAt >= 2018-06-18T22:28:28Z", true, false),
        ("registeredAt > 2018-06-18T22:28:28Z", false, false),
        ("registeredAt == 2018-06-19T00:28:28+02:00", true, false),
        ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", true, true),
        ("ec2InstanceId == \"i-abcd1234\"", true, false),
        (
            "ec2InstanceId == i-abcd1234 && agentConnected == true",
            true,
            false,
        ),
        (
            "ec2InstanceId == i-abcd1234 || agentConnected == false",
            true,
            true,
        ),
        // `and` binds tighter than `or`.
        (
            "ec2InstanceId == x or ec2InstanceId == i-wxyx7890 and agentConnected == false",
            false,
            true,
        ),
        (
            "(ec2InstanceId == x or ec2InstanceId == i-abcd1234) and agentConnected == true",
            true,
            false,
        ),
        ("not not attribute:stack == prod", true, false),
        ("attribute:stack==prod", true, false),
        ("ATTRIBUTE:stack == prod", false, false),
    ];
    for &(expr, on_web, on_gpu) in cases {
        let parsed = match cql::parse(expr) {
            Ok(p) => p,
            Err(e) if expr.starts_with("ATTRIBUTE") => {
                // Subjects are case-sensitive; skip truth check.
                assert_eq!(e.position, 0);
                continue;
            }
            Err(e) => panic!("{expr}: {e}"),
        };
        assert_eq!(parsed.eval(&web()), on_web, "{expr} on web");
        assert_eq!(parsed.eval(&gpu()), on_gpu, "{expr} on gpu");
    }
}

#[test]
fn errors_point_at_the_problem() {
    // (expression, byte position, fragment of `expected`)
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "subject"),
        ("foo == bar", 0, "subject"),
        ("attribute: == x", 0, "subject"),
        ("attribute:a", 11, "operator"),
        ("attribute:a is b", 12, "operator"),
        ("attribute:a ==", 14, "value"),
        ("attribute:a in x", 15, "`[`"),
        ("attribute:a in [x", 17, "`,` or `]`"),
        ("attribute:a in [x,]", 18, "value"),
        ("(attribute:a exists", 19, "`)`"),
        ("attribute:a exists)", 18, "end of input"),
        ("attribute:a exists and", 22, "subject"),
        ("attribute:a exists attribute:b exists", 19, "end of input"),
        ("attribute:a =~ '('", 15, "regular expression"),
        ("attribute:a == 'x", 15, "closing"),
        ("runningTasksCount > many", 20, "integer"),
        ("agentConnected == yes", 18, "true"),
        ("registeredAt < yesterday", 15, "date"),
        ("attribute:a & b", 12, "subject, operator or value"),
    ];
    for &(expr, pos, expected) in cases {
        let err = cql::parse(expr).expect_err(expr);
        assert_eq!(err.position, pos, "{expr}: {err}");
        assert!(err.expected.contains(expected), "{expr}: {err}");
    }
}

#[test]
fn deep_nesting_and_length_are_bounded() {
    let deep = format!(
        "{}attribute:a exists{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(cql::parse(&deep).is_err());
    let nots = format!("{}attribute:a exists", "! ".repeat(900));
    assert!(cql::parse(&nots).is_err());
    let long = "attribute:a exists and ".repeat(100);
    assert!(cql::parse(&long).is_err());
}

#[test]
fn dates() {
    assert_eq!(parse_date_millis("1970-01-01"), Some(0));
    assert_eq!(parse_date_millis("1970-01-01T00:00:01Z"), Some(1000));
    assert_eq!(parse_date_millis("1970-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(
        parse_date_millis("2018-06-18T22:28:28.5Z"),
        Some(1_529_360_908_500)
    );
    assert_eq!(parse_date_millis("2018-13-01"), None);
    assert_eq!(parse_date_millis("2018-06-18T22:28"), None);
    assert_eq!(parse_date_millis("2018-06-18T22:28:28+0000"), None);
    assert_eq!(parse_date_millis("é"), None);
}

proptest! {
    #[test]
    fn parser_never_panics(s in "\\PC{0,80}") {
        if let Ok(e) = cql::parse(&s) {
            let _ = e.eval(&web());
        }
    }

    #[test]
    fn parser_never_panics_on_cql_like_input(
        parts in proptest::collection::vec(prop_oneof![
            Just("attribute:a"), Just("task:group"), Just("registeredAt"), Just("runningTasksCount"),
            Just("=="), Just("!="), Just("!"), Just("in"), Just("["), Just("]"), Just(","),
            Just("("), Just(")"), Just("and"), Just("||"), Just("not"), Just("exists"),
            Just("=~"), Just("x"), Just("'q'"), Just("1"), Just("2018-01-01"), Just(">="),
        ], 0..20)
    ) {
        let s = parts.join(" ");
        if let Ok(e) = cql::parse(&s) {
            let _ = e.eval(&web());
            let _ = e.eval(&gpu());
        }
    }
}

/// Every operator's word form means the same as its symbol form, on every
/// subject, on both instances.
#[test]
fn word_and_symbol_operators_agree_on_every_subject() {
    // (subject, two values it can compare against)
    let subjects = [
        ("agentConnected", "true", "false"),
        ("agentVersion", "1.10.0", "2"),
        ("attribute:cores", "10", "x"),
        ("attribute:missing", "x", "y"),
        ("ec2InstanceId", "i-abcd1234", "i-0"),
        ("registeredAt", "2018-01-01", "2017-01-01T00:00:00Z"),
        ("runningTasksCount", "1", "7"),
        ("task:group", "service:production", "family:x"),
    ];
    let pairs = [
        ("==", "equals"),
        ("!=", "not_equals"),
        (">", "greater_than"),
        (">=", "greater_than_equal"),
        ("<", "less_than"),
        ("<=", "less_than_equal"),
        ("=~", "matches"),
        ("!~", "not_matches"),
        ("in", "IN"),
        ("!in", "not_in"),
        ("exists", "EXISTS"),
        ("!exists", "not_exists"),
    ];
    for (subject, value, other) in subjects {
        for (symbol, word) in pairs {
            let arg = match symbol {
                "exists" | "!exists" => String::new(),
                "in" | "!in" => format!("[{value}, {other}]"),
                "=~" | "!~" => format!("'{}.*'", &value[..1]),
                _ => value.to_string(),
            };
            let a = cql::parse(&format!("{subject} {symbol} {arg}")).unwrap();
            let b = cql::parse(&format!("{subject} {word} {arg}")).unwrap();
            assert_eq!(a, b, "{subject} {symbol}/{word}");
            for inst in [web(), gpu()] {
                assert_eq!(a.eval(&inst), b.eval(&inst), "{subject} {symbol}/{word}");
            }
        }
    }
}

/// Operator/subject combinations the truth table above does not reach.
#[test]
fn more_operators_per_subject() {
    let cases: &[(&str, bool, bool)] = &[
        ("attribute:cores less_than 10", true, false),
        ("attribute:cores <= 8", true, false),
        ("attribute:cores > 8", false, true),
        // Non-numeric values compare lexicographically.
        ("attribute:ecs.instance-type > t2", true, false),
        ("attribute:missing == x", false, false),
        ("attribute:missing not_in [x]", true, true),
        ("attribute:missing !~ '.*'", true, true),
        ("attribute:missing > 0", false, false),
        ("ec2InstanceId =~ 'i-a.*'", true, false),
        ("ec2InstanceId !in [i-abcd1234]", false, true),
        ("ec2InstanceId exists", true, true),
        ("agentVersion in [1.9.0, 2.0.0]", false, true),
        ("agentVersion =~ '1\\.9\\..*'", false, true),
        ("agentVersion >= 1.9", true, true),
        ("agentVersion greater_than 1.9.0", true, false),
        ("agentConnected in [true]", true, false),
        ("agentConnected !exists", false, false),
        ("registeredAt in [2017-01-01]", false, true),
        ("registeredAt less_than_equal 2017-01-01", false, true),
        ("registeredAt =~ '.*'", false, false),
        ("registeredAt exists", true, true),
        ("runningTasksCount not_in [0]", true, false),
        ("runningTasksCount =~ '[01]'", true, true),
        ("runningTasksCount <= 0", false, true),
        ("runningTasksCount greater_than_equal 1", true, false),
        ("task:group not_in [service:production]", false, true),
        ("task:group !~ 'service:.*'", false, true),
        ("task:group !exists", false, true),
        ("task:group > service:a", true, false),
        // Word connectives are case-insensitive; `not` binds tighter than `and`.
        (
            "runningTasksCount == 1 AND agentConnected == true",
            true,
            false,
        ),
        (
            "runningTasksCount == 1 Or agentConnected == false",
            true,
            true,
        ),
        ("NOT runningTasksCount == 1", false, true),
        (
            "not runningTasksCount == 1 and agentConnected == false",
            false,
            true,
        ),
        (
            "not (runningTasksCount == 1 or agentConnected == false)",
            false,
            false,
        ),
        (
            "!(runningTasksCount == 1) || !(agentConnected == false)",
            true,
            true,
        ),
        ("((runningTasksCount == 1))", true, false),
        // `and` binds tighter than `or`, on both sides.
        (
            "agentConnected == false and runningTasksCount == 1 or ec2InstanceId == i-abcd1234",
            true,
            false,
        ),
        (
            "agentConnected == false and (runningTasksCount == 1 or ec2InstanceId == i-abcd1234)",
            false,
            false,
        ),
        // Quoted values may hold spaces, commas and operator characters.
        (
            "attribute:ecs.os-type in ['lin ux', \"a,b\", linux]",
            true,
            false,
        ),
        ("attribute:stack != 'a==b'", true, true),
    ];
    for &(expr, on_web, on_gpu) in cases {
        let parsed = cql::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(parsed.eval(&web()), on_web, "{expr} on web");
        assert_eq!(parsed.eval(&gpu()), on_gpu, "{expr} on gpu");
    }
}

#[test]
fn more_errors_point_at_the_problem() {
    // (expression, byte position, fragment of `expected`)
    let cases: &[(&str, usize, &str)] = &[
        ("not", 3, "subject"),
        ("!", 1, "subject"),
        ("()", 1, "subject"),
        ("(attribute:a exists))", 20, "end of input"),
        ("attribute:a ! x", 12, "operator"),
        ("attribute:a !equals x", 12, "operator"),
        ("attribute:a in []", 16, "value"),
        ("attribute:a in [x y]", 18, "`,` or `]`"),
        ("attribute:a !in x", 16, "`[`"),
        ("attribute:a =~", 14, "value"),
        ("attribute:a matches '[a-'", 20, "regular expression"),
        ("attribute:a == b c", 17, "end of input"),
        ("attribute:a exists or", 21, "subject"),
        ("attribute:a exists && || attribute:b exists", 22, "subject"),
        ("attribute:a == b and (attribute:c exists", 40, "`)`"),
        ("task:groups == x", 0, "subject"),
        ("Attribute:x exists", 0, "subject"),
        ("runningTasksCount == -1", 21, "integer"),
        ("runningTasksCount in [1, x]", 25, "integer"),
        ("registeredAt in [2018-01-01, 2018-13-01]", 29, "date"),
        ("agentConnected in [true, maybe]", 25, "`true` or `false`"),
        // Positions are byte offsets: `é` is two bytes.
        ("attribute:zoné == 'x", 19, "closing"),
        ("attribute:é ~ x", 13, "operator"),
        ("attribute:é & x", 13, "subject, operator or value"),
    ];
    for &(expr, pos, expected) in cases {
        let err = cql::parse(expr).expect_err(expr);
        assert_eq!(err.position, pos, "{expr}: {err}");
        assert!(err.expected.contains(expected), "{expr}: {err}");
    }
    let max = format!(
        "attribute:a == {}",
        "x".repeat(cql::MAX_EXPRESSION_LEN - 15)
    );
    assert!(cql::parse(&max).is_ok());
    let err = cql::parse(&format!("{max}x")).unwrap_err();
    assert_eq!(err.position, cql::MAX_EXPRESSION_LEN);
}

/// Equal text parses to equal expressions (the placer finds its cached
/// index by comparing requests); regexes compare by pattern.
#[test]
fn expressions_compare_structurally() {
    let p = |s: &str| cql::parse(s).unwrap();
    assert_eq!(
        p("attribute:a =~ 'x.*' and task:group in [a, b]"),
        p("attribute:a matches 'x.*' && task:group in [a,b]")
    );
    assert_ne!(p("attribute:a =~ 'x.*'"), p("attribute:a =~ 'x.+'"));
    assert_ne!(p("attribute:a == x"), p("attribute:a != x"));
    assert_ne!(
        p("attribute:a == x or attribute:b exists"),
        p("attribute:b exists or attribute:a == x")
    );
    assert_ne!(p("task:group in [a, b]"), p("task:group in [b, a]"));
}
