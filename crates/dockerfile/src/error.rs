//! Parse errors. Messages are BuildKit's wording, so users searching for
//! them find Docker's documentation; the location prefix is ours.

use thiserror::Error;

use crate::mount::MountError;
use crate::shell::ShellError;
use crate::unicode::go_quote;

/// What went wrong, without the location.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    // --- the file as a whole ---
    #[error("file with no instructions")]
    NoInstructions,
    #[error("dockerfile line greater than max allowed size of {}", crate::parser::MAX_LINE - 1)]
    LineTooLong,
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscapeToken(String),
    #[error("unterminated heredoc")]
    UnterminatedHeredoc,
    #[error("internal lexing of heredoc produced inconsistent results: {0}")]
    InconsistentHeredoc(String),
    #[error("{0}")]
    Heredoc(Box<ShellError>),
    #[error("ONBUILD nested deeper than {0} levels")]
    OnbuildTooDeep(usize),

    // --- arguments ---
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    #[error("{0} must have two arguments")]
    MustHaveTwoArguments(&'static str),
    #[error("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(.0))]
    MissingEquals(String),
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(&'static str),
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(&'static str),
    #[error("{0} requires at least two arguments, but only one was provided. Destination could not be determined")]
    NoDestination(&'static str),
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocDestination(&'static str),
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    #[error("Bad input to {0}, too many arguments")]
    TooManyArguments(&'static str),
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error("invalid name for build stage: {}, name can't start with a number or contain symbols", go_quote(.0))]
    InvalidStageName(String),
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    #[error("Unknown type {} in HEALTHCHECK (try CMD)", go_quote(.0))]
    HealthcheckType(String),
    #[error("time: invalid duration {}", go_quote(.0))]
    InvalidDuration(String),
    #[error("Interval {} cannot be less than 1ms", go_quote(.0))]
    IntervalTooShort(String),
    #[error("strconv.ParseInt: parsing {}: invalid syntax", go_quote(.0))]
    InvalidRetries(String),
    #[error("--retries cannot be negative ({0})")]
    NegativeRetries(i64),
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("{0} requires the arguments to be in JSON form")]
    NotJson(&'static str),
    #[error("invalid network mode {}", go_quote(.0))]
    InvalidNetwork(String),
    #[error("security {} is not valid", go_quote(.0))]
    InvalidSecurity(String),
    #[error("no build stage in current context")]
    NoStage,
    #[error(transparent)]
    Mount(Box<MountError>),

    // --- flags ---
    #[error("arg should start with -- : {0}")]
    FlagSyntax(String),
    #[error("unknown flag: {0}")]
    UnknownFlag(String),
    #[error("duplicate flag specified: {0}")]
    DuplicateFlag(String),
    #[error("missing a value on flag: {0}")]
    MissingFlagValue(String),
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    FlagNotBool { flag: String, value: String },
}

impl From<MountError> for ErrorKind {
    fn from(e: MountError) -> Self {
        ErrorKind::Mount(Box::new(e))
    }
}

/// A parse error with where it happened. Displays as
/// `line 3: ENV: ENV names can not be blank`; the caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{kind}", prefix(*.line, .instruction.as_deref()))]
pub struct ParseError {
    /// First line (1-based) of the offending instruction, when there is one.
    pub line: Option<usize>,
    /// Last line of the offending instruction.
    pub end_line: Option<usize>,
    /// The instruction keyword, upper-cased.
    pub instruction: Option<String>,
    pub kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn file(kind: ErrorKind) -> Self {
        ParseError {
            line: None,
            end_line: None,
            instruction: None,
            kind,
        }
    }

    pub(crate) fn at(line: usize, kind: ErrorKind) -> Self {
        ParseError {
            line: Some(line),
            end_line: Some(line),
            instruction: None,
            kind,
        }
    }
}

fn prefix(line: Option<usize>, instruction: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(l) = line {
        s.push_str(&format!("line {l}: "));
    }
    if let Some(i) = instruction {
        s.push_str(i);
        s.push_str(": ");
    }
    s
}
