//! Deployment settings against a binary's real flags.

/// Turns `NAME=value` environment settings into the command-line arguments
/// that mean the same for the clap parser `C`, failing on a name no flag
/// reads. Lets tests check that deployment manifests only set variables the
/// binaries accept, without touching the process environment.
pub fn env_to_args<C: clap::CommandFactory>(env: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let command = C::command();
    let mut args = vec![command.get_name().to_owned()];
    for (name, value) in env {
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == *name))
            .ok_or_else(|| format!("no flag reads the environment variable {name}"))?;
        let long = arg
            .get_long()
            .ok_or_else(|| format!("{name}: flag has no long form"))?;
        if arg.get_action().takes_values() {
            args.push(format!("--{long}={value}"));
        } else if !matches!(*value, "" | "0" | "false" | "no" | "off") {
            args.push(format!("--{long}"));
        }
    }
    Ok(args)
}
