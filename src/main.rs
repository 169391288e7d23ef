fn main() -> std::process::ExitCode {
    mgmt::cli::main()
}
