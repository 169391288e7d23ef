//! Upstream's core modules this agent does not have yet, each with what it is for, so that
//! importing one says so instead of calling it an unknown module.

/// By the name written in `import "..."`: what the module is for.
const UNAVAILABLE: &[(&str, &str)] = &[
    ("local", "keeps state on this host (`pool`, `vardir`)"),
    ("test", "holds the functions upstream's own tests use"),
    ("sys/fwupd", "asks fwupd about firmware updates"),
    ("net/http", "makes HTTP requests"),
    ("golang/math/rand", "draws random numbers, which are not pure values"),
    ("embedded/provisioner", "configures upstream's embedded provisioner tool"),
];

/// What `module` is for, if it is one of upstream's core modules this agent does not have.
pub fn unavailable(module: &str) -> Option<&'static str> {
    UNAVAILABLE.iter().find(|(name, _)| *name == module).map(|(_, what)| *what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_unavailable_module_is_also_implemented() {
        for (name, _) in UNAVAILABLE {
            assert!(!super::super::is_module(name), "`{name}` is implemented");
        }
        assert!(unavailable("local").is_some());
        assert!(unavailable("fmt").is_none());
    }
}
