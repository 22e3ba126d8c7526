#![no_main]

use berth_dockerfile::{
    expand, expand_words, from_ast, heredoc::chomp_heredoc_content, parse_ast, parse_mount,
    Instruction, Lexer, Node, Value,
};
use libfuzzer_sys::fuzz_target;

/// Set, set-but-empty and unset names, with values holding pattern and
/// field-splitting characters so every operator branch is reachable.
fn env() -> Vec<(String, String)> {
    [
        ("A", "value"),
        ("PWD", "/home/user"),
        ("EMPTY", ""),
        ("SPACES", "  a b  "),
        ("GLOB", "*?\\/}"),
        ("LINES", "one\ntwo"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn words_of(node: &Node, out: &mut Vec<String>) {
    out.push(node.keyword.clone());
    out.extend(node.flags.iter().cloned());
    for arg in &node.args {
        match arg {
            Value::Word(w) => out.push(w.clone()),
            Value::Instruction(inner) => words_of(inner, out),
        }
    }
    for doc in &node.heredocs {
        out.push(doc.content.clone());
        let _ = chomp_heredoc_content(&doc.content);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ast = match parse_ast(text) {
        Ok(ast) => ast,
        Err(err) => {
            // Formatting must not panic either.
            let _ = err.to_string();
            return;
        }
    };
    let _ = ast.dump();
    let vars = env();
    let mut words = Vec::new();
    for node in &ast.children {
        words_of(node, &mut words);
    }
    let mut raw = Lexer::new(ast.escape);
    raw.raw_quotes = true;
    raw.raw_escapes = true;
    raw.skip_unset_env = true;
    for word in &words {
        let _ = expand(word, &vars, ast.escape).map_err(|e| e.to_string());
        let _ = expand_words(word, &vars, ast.escape);
        let _ = raw.process(word, &vars);
    }
    match from_ast(ast) {
        Ok(df) => {
            for stage in &df.stages {
                for command in &stage.instructions {
                    if let Instruction::Run { mounts, .. } = &command.instruction {
                        for m in mounts {
                            if let Ok(expanded) = expand(m, &vars, df.escape()) {
                                let _ = parse_mount(&expanded).map_err(|e| e.to_string());
                            }
                        }
                    }
                }
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
