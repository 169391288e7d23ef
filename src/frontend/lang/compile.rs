//! A program, from loaded files to a graph: scope, types, then evaluation. Each stage stops
//! the program at its first failing stage with every error that stage found; nothing of a
//! program with an error is applied.

use super::diagnostic::Diagnostic;
use std::sync::Arc;

use super::eval::streams::Streams;
use super::eval::{self, Evaluation, Typing};
use super::funcs::HostInfo;
use super::infer::{self, Types};
use super::module::Module;
use super::scope;
use super::span::Span;
use super::types::Type;
use crate::frontend::GraphSpec;

/// Compiles a loaded program into the graph it describes for this host.
pub fn compile(module: &Module, host: &HostInfo) -> Result<GraphSpec, Vec<Diagnostic>> {
    let resolution = scope::resolve(module)?;
    let types = infer::check(module, &resolution)?;
    eval::evaluate(module, &resolution, &types, host)
}

/// Compiles a loaded program to run: its function graph, not run yet, whose changing
/// functions read their values in `streams`.
pub fn compile_live(
    module: &Module,
    host: &HostInfo,
    streams: Arc<Streams>,
) -> Result<Evaluation, Vec<Diagnostic>> {
    let resolution = scope::resolve(module)?;
    let types = infer::check(module, &resolution)?;
    Evaluation::build(module, &resolution, &types, host, Some(streams))
}

/// Evaluation asks inference for the types of calls, per instance of a class body.
impl Typing for Types {
    fn call_type(&self, instance: u32, span: Span) -> Option<Type> {
        self.call_type_in(instance, span).or_else(|| Types::call_type(self, span)).cloned()
    }

    fn expr_type(&self, instance: u32, span: Span) -> Option<Type> {
        self.expr_type_in(instance, span).or_else(|| Types::expr_type(self, span)).cloned()
    }

    fn included(&self, instance: u32, include: Span) -> Option<u32> {
        Types::included(self, instance, include)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// Compiles `text` on a thread with the stack the agent's blocking pool gives (2 MiB).
    fn compile_on_a_small_stack(text: String) -> Result<GraphSpec, Vec<String>> {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("main.mcl"), text).unwrap();
                let module = super::super::load(dir.path()).unwrap_or_else(|e| panic!("{:?}", e.diagnostics));
                let host = HostInfo { hostname: "h".into(), ..HostInfo::default() };
                compile(&module, &host).map_err(|e| e.into_iter().map(|d| d.message).collect())
            })
            .unwrap()
            .join()
            .expect("compiling must not overflow the stack")
    }

    #[test]
    fn long_chains_of_binds_lambdas_and_funcs_compile_on_a_small_stack() {
        let n = 20_000;
        let mut text = String::from("import \"fmt\"\n$x0 = 1\n");
        for i in 1..n {
            let _ = writeln!(text, "$x{i} = $x{} + 1", i - 1);
        }
        let _ = writeln!(text, "print \"p\" {{\n\tmsg => fmt.printf(\"%d\", $x{}),\n}}", n - 1);
        let spec = compile_on_a_small_stack(text.clone()).unwrap();
        let json = serde_json::to_string(&spec.resources[0].to_json()).unwrap();
        assert!(json.contains(&format!("\"msg\":\"{n}\"")), "{json}");

        // Calls nested deeper than the evaluator allows are an error, not a crash.
        text.push_str("$f0 = func($l) { $l }\n");
        for i in 1..n {
            let _ = writeln!(text, "$f{i} = func($l) {{ $f{}($l) }}", i - 1);
        }
        let _ = writeln!(
            text,
            "$list = $f{}([1])\nprint \"q\" {{\n\tmsg => fmt.printf(\"%d\", len($list)),\n}}",
            n - 1
        );
        let errors = compile_on_a_small_stack(text).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("capture functions more than 200 deep")), "{errors:?}");

        // The same for generic `func` statements, composed, used at two types.
        let mut text = String::from("func f0($x) {\n\t[$x]\n}\n");
        for i in 1..n {
            let _ = writeln!(text, "func f{i}($x) {{\n\tf{}($x)\n}}", i - 1);
        }
        let _ = writeln!(text, "$ints = f{}(1)\n$strs = f{}(\"a\")", n - 1, n - 1);
        text.push_str("print \"p\" {\n\tmsg => $strs[0],\n}\n");
        let errors = compile_on_a_small_stack(text).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("capture functions more than 200 deep")), "{errors:?}");
    }

    /// The ```mcl blocks of a Markdown text.
    fn mcl_blocks(markdown: &str) -> Vec<String> {
        markdown
            .split("```mcl\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn every_program_in_the_docs_compiles() {
        let docs = [
            ("README.md", include_str!("../../../README.md")),
            ("docs/lang.md", include_str!("../../../docs/lang.md")),
        ];
        let mut checked = 0;
        for (doc, text) in docs {
            for (i, program) in mcl_blocks(text).into_iter().enumerate() {
                if let Err(errors) = compile_on_a_small_stack(program.clone()) {
                    panic!("{doc}, mcl block {}:\n{program}\n{errors:?}", i + 1);
                }
                checked += 1;
            }
        }
        assert!(checked >= 7, "only {checked} programs found");
    }
}
