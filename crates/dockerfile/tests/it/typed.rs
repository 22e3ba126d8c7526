//! The typed instruction layer, the escape directive and error locations.

use berth_dockerfile::{expand, parse, parse_ast, Instruction, ShellOrExec};

#[test]
fn stages_and_global_args() {
    let df = parse(
        "# syntax=docker/dockerfile:1\nARG BASE=alpine VERSION\nFROM --platform=$BUILDPLATFORM ${BASE}:3 AS Build\nARG VERSION\nRUN make\n\nFROM scratch\nCOPY --from=build --chown=1:1 --link /out /bin/\n",
    )
    .unwrap();
    assert_eq!(df.syntax(), Some("docker/dockerfile:1"));
    assert_eq!(
        df.global_arg_pairs(),
        [
            ("BASE".to_owned(), Some("alpine".to_owned())),
            ("VERSION".to_owned(), None)
        ]
    );
    assert_eq!(df.stages.len(), 2);
    let build = &df.stages[0];
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.base, "${BASE}:3");
    assert_eq!(build.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(build.start_line, 3);
    assert_eq!(build.instructions.len(), 2);
    assert_eq!(
        build.instructions[1].instruction,
        Instruction::Run {
            cmd: ShellOrExec::Shell("make".into()),
            mounts: vec![],
            network: None,
            security: None,
            devices: vec![],
            heredocs: vec![],
        }
    );
    let Instruction::Copy {
        srcs,
        dest,
        from,
        chown,
        link,
        ..
    } = &df.stages[1].instructions[0].instruction
    else {
        panic!("not COPY");
    };
    assert_eq!(
        (srcs.as_slice(), dest.as_str()),
        (&["/out".to_owned()][..], "/bin/")
    );
    assert_eq!(
        (from.as_deref(), chown.as_deref(), *link),
        (Some("build"), Some("1:1"), true)
    );
}

#[test]
fn forms_and_values() {
    let df = parse(
        "FROM x\nENV A=1 B=\"two words\"\nENV OLD value with spaces\nLABEL a=b\nEXPOSE 80 443/tcp 53/udp\nVOLUME [\"/a\", \"/b\"]\nCMD [\"a\", \"b\"]\nENTRYPOINT exec me\nSHELL [\"/bin/bash\", \"-c\"]\nUSER app\nWORKDIR /w\nSTOPSIGNAL SIGTERM\nMAINTAINER me\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f http://x/\n",
    )
    .unwrap();
    let got: Vec<&Instruction> = df.stages[0]
        .instructions
        .iter()
        .map(|c| &c.instruction)
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        got[0],
        &Instruction::Env(vec![
            ("A".into(), "1".into()),
            ("B".into(), "\"two words\"".into())
        ])
    );
    assert_eq!(
        got[1],
        &Instruction::Env(vec![("OLD".into(), "value with spaces".into())])
    );
    assert_eq!(got[2], &Instruction::Label(vec![("a".into(), "b".into())]));
    assert_eq!(
        got[3],
        &Instruction::Expose(s(&["443/tcp", "53/udp", "80"]))
    );
    assert_eq!(got[4], &Instruction::Volume(s(&["/a", "/b"])));
    assert_eq!(got[5], &Instruction::Cmd(ShellOrExec::Exec(s(&["a", "b"]))));
    assert_eq!(
        got[6],
        &Instruction::Entrypoint(ShellOrExec::Shell("exec me".into()))
    );
    assert_eq!(got[7], &Instruction::Shell(s(&["/bin/bash", "-c"])));
    assert_eq!(got[8], &Instruction::User("app".into()));
    assert_eq!(got[9], &Instruction::Workdir("/w".into()));
    assert_eq!(got[10], &Instruction::StopSignal("SIGTERM".into()));
    assert_eq!(got[11], &Instruction::Maintainer("me".into()));
    let Instruction::Healthcheck(h) = got[12] else {
        panic!("not HEALTHCHECK")
    };
    assert_eq!(h.test, s(&["CMD-SHELL", "curl -f http://x/"]));
    assert_eq!(h.interval, Some(std::time::Duration::from_secs(5)));
    assert_eq!(h.retries, 3);
    // Values stay raw for the builder to expand in context.
    assert_eq!(
        expand("\"two words\"", &berth_dockerfile::NoEnv, '\\').unwrap(),
        "two words"
    );
}

#[test]
fn run_flags() {
    let df =
        parse("FROM x\nRUN --mount=type=cache,target=/c --network=none --security=insecure echo\n")
            .unwrap();
    let Instruction::Run {
        mounts,
        network,
        security,
        ..
    } = &df.stages[0].instructions[0].instruction
    else {
        panic!("not RUN");
    };
    assert_eq!(mounts, &["type=cache,target=/c".to_owned()]);
    assert_eq!(
        (network.as_deref(), security.as_deref()),
        (Some("none"), Some("insecure"))
    );
    let m = berth_dockerfile::parse_mount(&mounts[0]).unwrap();
    assert_eq!(m.kind, berth_dockerfile::MountType::Cache);
    let err = parse("FROM x\nRUN --network=bridge echo\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: RUN: invalid network mode \"bridge\""
    );
}

#[test]
fn escape_directive_with_backtick() {
    let text = "# escape=`\nFROM windows\nRUN dir c:\\ `\n  && echo done\nCOPY a\\b c:\\dest\\\n";
    let df = parse(text).unwrap();
    assert_eq!(df.escape(), '`');
    let got: Vec<&Instruction> = df.stages[0]
        .instructions
        .iter()
        .map(|c| &c.instruction)
        .collect();
    assert_eq!(
        got[0],
        &Instruction::Run {
            cmd: ShellOrExec::Shell("dir c:\\   && echo done".into()),
            mounts: vec![],
            network: None,
            security: None,
            devices: vec![],
            heredocs: vec![],
        }
    );
    let Instruction::Copy { srcs, dest, .. } = got[1] else {
        panic!("not COPY")
    };
    assert_eq!((srcs[0].as_str(), dest.as_str()), ("a\\b", "c:\\dest\\"));
    // The backtick escapes in expansion too; backslashes are literal.
    assert_eq!(
        expand("c:\\a`$b", &berth_dockerfile::NoEnv, '`').unwrap(),
        "c:\\a$b"
    );
}

#[test]
fn directives_only_at_the_top() {
    let df = parse("# hello\n# escape=`\nFROM x\nRUN a \\\n b\n").unwrap();
    assert_eq!(df.escape(), '\\');
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        Instruction::Run {
            cmd: ShellOrExec::Shell("a  b".into()),
            mounts: vec![],
            network: None,
            security: None,
            devices: vec![],
            heredocs: vec![],
        }
    );
    let err = parse_ast("# escape=`\n# escape=\\\nFROM x\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: only one escape parser directive can be used"
    );
    let err = parse_ast("# escape=x\nFROM x\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: invalid escape token 'x' does not match ` or \\"
    );
}

#[test]
fn case_insensitive_and_comments() {
    let ast = parse_ast("from x\n# a comment\nrun echo \\\n # inside\n  hi\n").unwrap();
    assert_eq!(ast.dump(), "(from \"x\")\n(run \"echo   hi\")");
    assert_eq!(ast.children[1].comments, ["a comment"]);
    assert_eq!(
        (ast.children[1].start_line, ast.children[1].end_line),
        (3, 5)
    );
}

#[test]
fn error_lines_and_instructions() {
    let cases = [
        ("FROM x\n\nENV =b\n", "line 3: ENV: ENV names can not be blank"),
        ("FROM x\nARG =b\n", "line 2: ARG: ARG names can not be blank"),
        ("FROM x\nLABEL a\n", "line 2: LABEL: LABEL must have two arguments"),
        ("FROM x\nENV a=b c\n", "line 2: ENV: Syntax error - can't find = in \"c\". Must be of the form: name=value"),
        ("FROM x\nRUN a \\\n b\nBOGUS y\n", "line 4: unknown instruction: BOGUS"),
        ("RUN x\n", "line 1: RUN: no build stage in current context"),
        ("FROM a b\n", "line 1: FROM: FROM requires either one or three arguments"),
        ("FROM a AS 1x\n", "line 1: FROM: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"),
        ("FROM a\nCOPY --nope a b\n", "line 2: COPY: unknown flag: --nope"),
        ("FROM a\nCOPY a\n", "line 2: COPY: COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
        ("FROM a\nSHELL sh -c\n", "line 2: SHELL: SHELL requires the arguments to be in JSON form"),
        ("FROM a\nONBUILD FROM b\n", "line 2: ONBUILD: FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD ONBUILD RUN b\n", "line 2: ONBUILD: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FROM a\nHEALTHCHECK --interval=1us CMD x\n", "line 2: HEALTHCHECK: Interval \"interval\" cannot be less than 1ms"),
        ("FROM a\nHEALTHCHECK CONNECT x\n", "line 2: HEALTHCHECK: Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)"),
        ("FROM a\nHEALTHCHECK NONE x\n", "line 2: HEALTHCHECK: HEALTHCHECK NONE takes no arguments"),
        ("FROM a\nVOLUME [\"\"]\n", "line 2: VOLUME: VOLUME specified can not be an empty string"),
        ("FROM a\nRUN --mount=from=$X echo\n", "line 2: RUN: 'from' doesn't support variable expansion, define alias stage instead"),
    ];
    for (text, expected) in cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.to_string(), expected, "{text:?}");
    }
}

#[test]
fn healthcheck_none_and_exec() {
    let df = parse("FROM a\nHEALTHCHECK NONE\nHEALTHCHECK --timeout=3s CMD [\"curl\", \"x\"]\n")
        .unwrap();
    let got: Vec<&Instruction> = df.stages[0]
        .instructions
        .iter()
        .map(|c| &c.instruction)
        .collect();
    let Instruction::Healthcheck(none) = got[0] else {
        panic!()
    };
    assert_eq!(none.test, ["NONE"]);
    let Instruction::Healthcheck(exec) = got[1] else {
        panic!()
    };
    assert_eq!(exec.test, ["CMD", "curl", "x"]);
    assert_eq!(exec.timeout, Some(std::time::Duration::from_secs(3)));
}

#[test]
fn onbuild_expression() {
    let df = parse("FROM a\nonbuild   COPY . /app\n").unwrap();
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        Instruction::Onbuild("COPY . /app".into())
    );
    assert_eq!(
        df.ast.dump(),
        "(from \"a\")\n(onbuild (copy \".\" \"/app\"))"
    );
}

#[test]
fn json_fallback_and_errors() {
    let ast = parse_ast("CMD [\"a\" \"b\"]\nCMD [1e999]\nRUN [\"\\u00e9\"]\n").unwrap();
    assert_eq!(
        ast.dump(),
        "(cmd \"[\\\"a\\\" \\\"b\\\"]\")\n(cmd \"[1e999]\")\n(run \"é\")"
    );
    assert!(!ast.children[0].json && ast.children[2].json);
    assert!(parse_ast("CMD [\"a\", 1]\n").is_err());
    assert!(parse_ast("COPY [\"a\", null]\n").is_err());
}

#[test]
fn bom_and_crlf() {
    let ast = parse_ast("\u{feff}FROM a\r\nRUN x \\\r\n  y\r\n").unwrap();
    assert_eq!(ast.dump(), "(from \"a\")\n(run \"x   y\")");
}

#[test]
fn empty_continuation_lines_warn() {
    let ast = parse_ast("FROM a\nRUN something \\\n\n    following\n").unwrap();
    assert_eq!(ast.warnings.len(), 1);
    assert!(ast.warnings[0]
        .message
        .contains("RUN something     following"));
}
