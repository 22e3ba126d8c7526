//! Typed instructions and build stages on top of the [`Ast`], with
//! BuildKit's argument and flag checks (`frontend/dockerfile/instructions`).
//!
//! Values are kept as written, quotes included: the builder expands each
//! with [`crate::shell::expand`] against the environment in force at that
//! point of the build, which the parser cannot know.

use std::time::Duration;

use crate::ast::{Ast, Heredoc, Node};
use crate::error::{ErrorKind, ParseError};
use crate::flags::{parse_flags, Kind};
use crate::heredoc::{chomp_heredoc_content, parse_heredoc};
use crate::mount::check_unexpanded;
use crate::unicode::{go_to_lower, go_to_upper, trim_space};
use crate::units::{parse_duration, parse_int32};

/// A command line in shell form (run through the `SHELL`) or exec form (a
/// JSON array, run directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    /// The arguments as one string; empty when none were given.
    Shell(String),
    Exec(Vec<String>),
}

/// A file whose content is given inline by a `COPY`/`ADD` heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceContent {
    /// The heredoc name, used as the file name.
    pub path: String,
    /// The body, already chomped for `<<-`.
    pub data: String,
    /// Variables in `data` are to be expanded (the delimiter was unquoted).
    pub expand: bool,
}

/// `HEALTHCHECK` settings, in the image-config form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// `None` when not given (or zero): inherit.
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    /// 0 when not given.
    pub retries: u32,
}

/// One Dockerfile instruction, with its arguments unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From {
        image: String,
        /// Lower-cased, as stage names are case-insensitive.
        stage_name: Option<String>,
        platform: Option<String>,
    },
    Run {
        cmd: ShellOrExec,
        /// `--mount` values, unexpanded; see [`crate::mount::parse_mount`].
        mounts: Vec<String>,
        /// `--network`: `default`, `none` or `host`.
        network: Option<String>,
        /// `--security`: `sandbox` or `insecure`.
        security: Option<String>,
        /// `--device` values, unexpanded.
        devices: Vec<String>,
        /// Heredoc bodies referenced from the command, in order.
        heredocs: Vec<Heredoc>,
    },
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    /// (key, value) pairs in order.
    Env(Vec<(String, String)>),
    /// Names with optional defaults.
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    /// Ports as written (`80`, `53/udp`, `${PORT}`), sorted as BuildKit does.
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Copy {
        srcs: Vec<String>,
        dest: String,
        from: Option<String>,
        chown: Option<String>,
        chmod: Option<String>,
        link: bool,
        parents: bool,
        excludes: Vec<String>,
        heredocs: Vec<SourceContent>,
    },
    Add {
        srcs: Vec<String>,
        dest: String,
        chown: Option<String>,
        chmod: Option<String>,
        checksum: Option<String>,
        link: bool,
        keep_git_dir: Option<bool>,
        unpack: Option<bool>,
        excludes: Vec<String>,
        heredocs: Vec<SourceContent>,
    },
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The trigger instruction's source text, recorded in the image and
    /// parsed again by builds that use it as a base.
    Onbuild(String),
    Maintainer(String),
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub instruction: Instruction,
    pub start_line: usize,
    pub end_line: usize,
    /// The logical source line, continuations joined.
    pub source: String,
}

/// A `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// The image or earlier stage to start from, unexpanded.
    pub base: String,
    pub platform: Option<String>,
    pub instructions: Vec<Command>,
    /// Lines of the `FROM` instruction.
    pub start_line: usize,
    pub end_line: usize,
}

/// A whole typed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM`; they may be used in `FROM` lines
    /// and re-declared inside stages.
    pub global_args: Vec<Command>,
    pub stages: Vec<Stage>,
    /// The syntax tree the stages were typed from.
    pub ast: Ast,
}

impl Dockerfile {
    /// The `# syntax=` directive, if any.
    pub fn syntax(&self) -> Option<&str> {
        self.ast
            .directives
            .iter()
            .find(|d| d.name == "syntax")
            .map(|d| d.value.as_str())
    }

    /// The escape character (`\` unless `# escape=`` set a backtick).
    pub fn escape(&self) -> char {
        self.ast.escape
    }

    /// The global `ARG`s flattened to (name, default) in order.
    pub fn global_arg_pairs(&self) -> Vec<(String, Option<String>)> {
        self.global_args
            .iter()
            .filter_map(|c| match &c.instruction {
                Instruction::Arg(pairs) => Some(pairs.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// Types an already-parsed syntax tree.
pub fn from_ast(ast: Ast) -> Result<Dockerfile, ParseError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &ast.children {
        let command = parse_instruction(node)?;
        match command.instruction {
            Instruction::From {
                image,
                stage_name,
                platform,
            } => stages.push(Stage {
                name: stage_name,
                base: image,
                platform,
                instructions: Vec::new(),
                start_line: command.start_line,
                end_line: command.end_line,
            }),
            Instruction::Arg(_) if stages.is_empty() => global_args.push(command),
            _ => match stages.last_mut() {
                Some(stage) => stage.instructions.push(command),
                None => return Err(located(node, ErrorKind::NoStage)),
            },
        }
    }
    Ok(Dockerfile {
        global_args,
        stages,
        ast,
    })
}

fn located(node: &Node, kind: ErrorKind) -> ParseError {
    ParseError {
        line: Some(node.start_line),
        end_line: Some(node.end_line),
        instruction: Some(go_to_upper(&node.keyword)),
        kind,
    }
}

/// Types one node.
pub fn parse_instruction(node: &Node) -> Result<Command, ParseError> {
    let instruction = instruction(node).map_err(|kind| {
        let mut err = located(node, kind);
        if matches!(err.kind, ErrorKind::UnknownInstruction(_)) {
            err.instruction = None;
        }
        err
    })?;
    Ok(Command {
        instruction,
        start_line: node.start_line,
        end_line: node.end_line,
        source: node.original.clone(),
    })
}

/// BuildKit's `handleJSONArgs`.
fn cmd_line(args: &[String], json: bool) -> ShellOrExec {
    if json {
        ShellOrExec::Exec(args.to_vec())
    } else {
        ShellOrExec::Shell(args.join(" "))
    }
}

fn no_flags(node: &Node) -> Result<(), ErrorKind> {
    parse_flags(&node.flags, &[]).map(|_| ())
}

fn key_values(args: &[String], name: &'static str) -> Result<Vec<(String, String)>, ErrorKind> {
    if args.is_empty() {
        return Err(ErrorKind::AtLeastOneArgument(name));
    }
    if !args.len().is_multiple_of(3) {
        return Err(ErrorKind::TooManyArguments(name));
    }
    args.chunks_exact(3)
        .map(|kv| match kv {
            [k, _, _] if k.is_empty() => Err(ErrorKind::BlankName(name)),
            [k, v, _] => Ok((k.clone(), v.clone())),
            _ => Err(ErrorKind::TooManyArguments(name)),
        })
        .collect()
}

fn exactly_one(args: &[String], name: &'static str) -> Result<String, ErrorKind> {
    match args {
        [one] => Ok(one.clone()),
        _ => Err(ErrorKind::ExactlyOneArgument(name)),
    }
}

/// Sources, destination and inline heredoc files of `COPY`/`ADD`.
fn sources_and_dest(
    node: &Node,
    args: &[String],
    name: &'static str,
) -> Result<(Vec<String>, String, Vec<SourceContent>), ErrorKind> {
    let Some((dest, srcs)) = args.split_last() else {
        return Err(ErrorKind::NoDestination(name));
    };
    if matches!(parse_heredoc(dest), Ok(Some(_))) {
        return Err(ErrorKind::HeredocDestination(name));
    }
    let mut paths = Vec::new();
    let mut contents = Vec::new();
    for src in srcs {
        match parse_heredoc(src) {
            Ok(Some(doc)) => {
                // As a Go map keyed by name: the last body of that name.
                let body = node
                    .heredocs
                    .iter()
                    .rev()
                    .find(|h| h.name == doc.name)
                    .map(|h| h.content.as_str())
                    .unwrap_or_default();
                let data = if doc.chomp {
                    chomp_heredoc_content(body)
                } else {
                    body.to_owned()
                };
                contents.push(SourceContent {
                    path: doc.name,
                    data,
                    expand: doc.expand,
                });
            }
            _ => paths.push(src.clone()),
        }
    }
    Ok((paths, dest.clone(), contents))
}

/// `HEALTHCHECK` interval flags: unset or zero is `None`; else at least 1ms.
fn interval(name: &str, value: Option<String>) -> Result<Option<Duration>, ErrorKind> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let nanos = parse_duration(&v).ok_or(ErrorKind::InvalidDuration(v))?;
    if nanos == 0 {
        return Ok(None);
    }
    if nanos < 1_000_000 {
        return Err(ErrorKind::IntervalTooShort(name.to_owned()));
    }
    Ok(Some(Duration::from_nanos(nanos.unsigned_abs())))
}

fn instruction(node: &Node) -> Result<Instruction, ErrorKind> {
    let args = node.arg_strings();
    let keyword = go_to_lower(&node.keyword);
    Ok(match keyword.as_str() {
        "env" => {
            no_flags(node)?;
            Instruction::Env(key_values(&args, "ENV")?)
        }
        "label" => {
            no_flags(node)?;
            Instruction::Label(key_values(&args, "LABEL")?)
        }
        "maintainer" => {
            let who = exactly_one(&args, "MAINTAINER")?;
            no_flags(node)?;
            Instruction::Maintainer(who)
        }
        "add" => {
            if args.len() < 2 {
                return Err(ErrorKind::NoDestination("ADD"));
            }
            let f = parse_flags(
                &node.flags,
                &[
                    ("chown", Kind::String),
                    ("chmod", Kind::String),
                    ("link", Kind::Bool),
                    ("keep-git-dir", Kind::Bool),
                    ("checksum", Kind::String),
                    ("unpack", Kind::Bool),
                    ("exclude", Kind::Strings),
                ],
            )?;
            let (srcs, dest, heredocs) = sources_and_dest(node, &args, "ADD")?;
            Instruction::Add {
                srcs,
                dest,
                chown: f.string("chown"),
                chmod: f.string("chmod"),
                checksum: f.string("checksum"),
                link: f.bool("link").unwrap_or(false),
                keep_git_dir: f.bool("keep-git-dir"),
                unpack: f.bool("unpack"),
                excludes: f.strings("exclude"),
                heredocs,
            }
        }
        "copy" => {
            if args.len() < 2 {
                return Err(ErrorKind::NoDestination("COPY"));
            }
            let f = parse_flags(
                &node.flags,
                &[
                    ("chown", Kind::String),
                    ("from", Kind::String),
                    ("chmod", Kind::String),
                    ("link", Kind::Bool),
                    ("exclude", Kind::Strings),
                    ("parents", Kind::Bool),
                ],
            )?;
            let (srcs, dest, heredocs) = sources_and_dest(node, &args, "COPY")?;
            Instruction::Copy {
                srcs,
                dest,
                from: f.string("from"),
                chown: f.string("chown"),
                chmod: f.string("chmod"),
                link: f.bool("link").unwrap_or(false),
                parents: f.bool("parents").unwrap_or(false),
                excludes: f.strings("exclude"),
                heredocs,
            }
        }
        "from" => {
            let stage_name = match args.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = go_to_lower(name);
                    if !valid_stage_name(&lower) {
                        return Err(ErrorKind::InvalidStageName(name.clone()));
                    }
                    Some(lower)
                }
                _ => return Err(ErrorKind::FromArguments),
            };
            let f = parse_flags(&node.flags, &[("platform", Kind::String)])?;
            Instruction::From {
                image: args.first().cloned().unwrap_or_default(),
                stage_name,
                platform: f.string("platform"),
            }
        }
        "onbuild" => {
            let Some(first) = args.first() else {
                return Err(ErrorKind::AtLeastOneArgument("ONBUILD"));
            };
            no_flags(node)?;
            let trigger = go_to_upper(trim_space(first));
            match trigger.as_str() {
                "ONBUILD" => return Err(ErrorKind::OnbuildChain),
                "MAINTAINER" | "FROM" => return Err(ErrorKind::OnbuildTrigger(trigger)),
                _ => {}
            }
            let mut expression = strip_onbuild(&node.original).to_owned();
            for doc in &node.heredocs {
                expression.push('\n');
                expression.push_str(&doc.content);
                expression.push_str(&doc.name);
            }
            Instruction::Onbuild(expression)
        }
        "workdir" => {
            let path = exactly_one(&args, "WORKDIR")?;
            no_flags(node)?;
            Instruction::Workdir(path)
        }
        "run" => {
            let f = parse_flags(
                &node.flags,
                &[
                    ("mount", Kind::Strings),
                    ("network", Kind::String),
                    ("security", Kind::String),
                    ("device", Kind::Strings),
                ],
            )?;
            let network = f.string("network");
            if let Some(n) = network
                .as_deref()
                .filter(|n| !matches!(*n, "default" | "none" | "host"))
            {
                return Err(ErrorKind::InvalidNetwork(n.to_owned()));
            }
            let security = f.string("security");
            if let Some(s) = security
                .as_deref()
                .filter(|s| !matches!(*s, "sandbox" | "insecure"))
            {
                return Err(ErrorKind::InvalidSecurity(s.to_owned()));
            }
            let mounts = f.strings("mount");
            for m in &mounts {
                check_unexpanded(m)?;
            }
            Instruction::Run {
                cmd: cmd_line(&args, node.json),
                mounts,
                network,
                security,
                devices: f.strings("device"),
                heredocs: node.heredocs.clone(),
            }
        }
        "cmd" => {
            no_flags(node)?;
            Instruction::Cmd(cmd_line(&args, node.json))
        }
        "entrypoint" => {
            no_flags(node)?;
            Instruction::Entrypoint(cmd_line(&args, node.json))
        }
        "healthcheck" => Instruction::Healthcheck(healthcheck(node, &args)?),
        "expose" => {
            if args.is_empty() {
                return Err(ErrorKind::AtLeastOneArgument("EXPOSE"));
            }
            no_flags(node)?;
            let mut ports = args;
            ports.sort();
            Instruction::Expose(ports)
        }
        "user" => {
            let user = exactly_one(&args, "USER")?;
            no_flags(node)?;
            Instruction::User(user)
        }
        "volume" => {
            if args.is_empty() {
                return Err(ErrorKind::AtLeastOneArgument("VOLUME"));
            }
            no_flags(node)?;
            let volumes = args
                .iter()
                .map(|v| match trim_space(v) {
                    "" => Err(ErrorKind::EmptyVolume),
                    v => Ok(v.to_owned()),
                })
                .collect::<Result<_, _>>()?;
            Instruction::Volume(volumes)
        }
        // BuildKit checks no flags for STOPSIGNAL and ARG.
        "stopsignal" => Instruction::StopSignal(exactly_one(&args, "STOPSIGNAL")?),
        "arg" => {
            if args.is_empty() {
                return Err(ErrorKind::AtLeastOneArgument("ARG"));
            }
            let pairs = args
                .iter()
                .map(|a| match a.split_once('=') {
                    Some(("", _)) => Err(ErrorKind::BlankName("ARG")),
                    Some((k, v)) => Ok((k.to_owned(), Some(v.to_owned()))),
                    None => Ok((a.clone(), None)),
                })
                .collect::<Result<_, _>>()?;
            Instruction::Arg(pairs)
        }
        "shell" => {
            no_flags(node)?;
            if args.is_empty() {
                return Err(ErrorKind::AtLeastOneArgument("SHELL"));
            }
            if !node.json {
                return Err(ErrorKind::NotJson("SHELL"));
            }
            Instruction::Shell(args)
        }
        _ => return Err(ErrorKind::UnknownInstruction(node.keyword.clone())),
    })
}

fn healthcheck(node: &Node, args: &[String]) -> Result<Healthcheck, ErrorKind> {
    let Some((typ, rest)) = args.split_first() else {
        return Err(ErrorKind::AtLeastOneArgument("HEALTHCHECK"));
    };
    let typ = go_to_upper(typ);
    if typ == "NONE" {
        // Flags are not checked for NONE, as in BuildKit.
        if !rest.is_empty() {
            return Err(ErrorKind::HealthcheckNoneArguments);
        }
        return Ok(Healthcheck {
            test: vec![typ],
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: 0,
        });
    }
    let f = parse_flags(
        &node.flags,
        &[
            ("interval", Kind::String),
            ("timeout", Kind::String),
            ("start-period", Kind::String),
            ("start-interval", Kind::String),
            ("retries", Kind::String),
        ],
    )?;
    if typ != "CMD" {
        return Err(ErrorKind::HealthcheckType(typ));
    }
    let test = match cmd_line(rest, node.json) {
        ShellOrExec::Exec(v) if !v.is_empty() => {
            let mut t = vec!["CMD".to_owned()];
            t.extend(v);
            t
        }
        ShellOrExec::Shell(s) if !rest.is_empty() => vec!["CMD-SHELL".to_owned(), s],
        _ => return Err(ErrorKind::HealthcheckMissingCommand),
    };
    let retries = match f.string("retries").filter(|r| !r.is_empty()) {
        None => 0,
        Some(r) => {
            let n = parse_int32(&r).ok_or_else(|| ErrorKind::InvalidRetries(r.clone()))?;
            u32::try_from(n).map_err(|_| ErrorKind::NegativeRetries(n))?
        }
    };
    Ok(Healthcheck {
        test,
        interval: interval("interval", f.string("interval"))?,
        timeout: interval("timeout", f.string("timeout"))?,
        start_period: interval("start-period", f.string("start-period"))?,
        start_interval: interval("start-interval", f.string("start-interval"))?,
        retries,
    })
}

/// `^[a-z][a-z0-9-_.]*$`
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// The source text after `ONBUILD` (BuildKit: `(?i)^\s*ONBUILD\s*`).
fn strip_onbuild(original: &str) -> &str {
    let is_re_space = |c: char| matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ');
    let s = original.trim_start_matches(is_re_space);
    match s.get(..7) {
        Some(kw) if kw.eq_ignore_ascii_case("onbuild") => s[7..].trim_start_matches(is_re_space),
        _ => original,
    }
}
