fn main() -> std::process::ExitCode {
    chatload::cli::main()
}
