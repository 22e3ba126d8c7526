//! Heredocs: the parser attaches bodies to RUN/COPY/ADD; the tables have
//! none, so these follow BuildKit's parser_heredoc_test behaviour.

use berth_dockerfile::{parse, parse_ast, Instruction, ShellOrExec};

#[test]
fn run_heredoc_body_and_lines() {
    let ast = parse_ast("FROM busybox\nRUN <<EOF\necho hello\necho world\nEOF\nRUN echo after\n")
        .unwrap();
    let run = &ast.children[1];
    assert_eq!(run.heredocs.len(), 1);
    assert_eq!(run.heredocs[0].name, "EOF");
    assert_eq!(run.heredocs[0].content, "echo hello\necho world\n");
    assert!(run.heredocs[0].expand);
    assert_eq!((run.start_line, run.end_line), (2, 5));
    assert_eq!(ast.children[2].start_line, 6);
    assert_eq!(
        ast.dump(),
        "(from \"busybox\")\n(run \"<<EOF\")\n(run \"echo after\")"
    );
}

#[test]
fn chomp_quotes_and_file_descriptors() {
    let text = "FROM x\nRUN 3<<-'A' 4<<\"B\" cat /dev/fd/3 /dev/fd/4\n\t\tone $X\n\tA\ntwo\nB\n";
    let ast = parse_ast(text).unwrap();
    let docs = &ast.children[1].heredocs;
    assert_eq!(docs.len(), 2);
    assert_eq!(
        (
            docs[0].name.as_str(),
            docs[0].file_descriptor,
            docs[0].chomp,
            docs[0].expand
        ),
        ("A", 3, true, false)
    );
    // Bodies are stored unchomped; chomping happens where they are used.
    assert_eq!(docs[0].content, "\t\tone $X\n");
    assert_eq!(
        (
            docs[1].name.as_str(),
            docs[1].file_descriptor,
            docs[1].expand
        ),
        ("B", 4, false)
    );
    assert_eq!(docs[1].content, "two\n");
}

#[test]
fn copy_heredocs_become_inline_files() {
    let df =
        parse("FROM x\nCOPY <<-EOF <<two.txt /dest/\n\thello\n\tEOF\nsecond\ntwo.txt\n").unwrap();
    let Instruction::Copy {
        srcs,
        dest,
        heredocs,
        ..
    } = &df.stages[0].instructions[0].instruction
    else {
        panic!("not COPY");
    };
    assert!(srcs.is_empty());
    assert_eq!(dest, "/dest/");
    assert_eq!(heredocs.len(), 2);
    assert_eq!(
        (heredocs[0].path.as_str(), heredocs[0].data.as_str()),
        ("EOF", "hello\n")
    );
    assert_eq!(
        (heredocs[1].path.as_str(), heredocs[1].data.as_str()),
        ("two.txt", "second\n")
    );
}

#[test]
fn heredoc_destination_is_rejected() {
    let err = parse("FROM x\nCOPY a <<EOF\nx\nEOF\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: COPY: COPY cannot accept a heredoc as a destination"
    );
}

#[test]
fn unterminated_heredoc() {
    let err = parse_ast("FROM x\nRUN <<EOF\necho\n").unwrap_err();
    assert_eq!(err.to_string(), "line 2: RUN: unterminated heredoc");
    assert_eq!(err.end_line, Some(3));
}

#[test]
fn exec_form_and_other_instructions_take_no_heredoc() {
    let ast = parse_ast("FROM x\nRUN [\"cat\", \"<<EOF\"]\nCMD cat <<EOF\n").unwrap();
    assert!(ast.children.iter().all(|c| c.heredocs.is_empty()));
}

#[test]
fn onbuild_heredoc_is_kept_in_the_expression() {
    let df = parse("FROM x\nONBUILD RUN <<EOF\necho hi\nEOF\n").unwrap();
    let Instruction::Onbuild(expr) = &df.stages[0].instructions[0].instruction else {
        panic!("not ONBUILD");
    };
    assert_eq!(expr, "RUN <<EOF\necho hi\nEOF");
}

#[test]
fn run_heredoc_typed() {
    let df = parse("FROM x\nRUN python3 <<EOF\nprint(1)\nEOF\n").unwrap();
    let Instruction::Run { cmd, heredocs, .. } = &df.stages[0].instructions[0].instruction else {
        panic!("not RUN");
    };
    assert_eq!(cmd, &ShellOrExec::Shell("python3 <<EOF".to_owned()));
    assert_eq!(heredocs[0].content, "print(1)\n");
}
