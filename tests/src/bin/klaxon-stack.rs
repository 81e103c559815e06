//! `klaxon-stack`: runs the local AWS stack for developers and the demo.
//!
//! `klaxon-stack` starts a stack, prints the environment to export, and runs until
//! Ctrl-C or end of input; lines typed on standard input are passed to the stack as
//! control commands (see `stack/klaxon_stack.py`), e.g.
//! `{"cmd": "fault", "service": "logs", "kind": "throttle", "count": 3}`.
//!
//! `klaxon-stack probe-imds` reads the instance id with aws-config's IMDS client,
//! configured from the environment alone (`AWS_EC2_METADATA_SERVICE_ENDPOINT`), and
//! prints it: a check that an environment reaches the IMDS it should.

use std::io::BufRead;

use anyhow::Context;
use klaxon_tests::LocalStack;

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        None => serve(),
        Some("probe-imds") => probe_imds(),
        Some("--help" | "-h") => {
            println!("usage: klaxon-stack [probe-imds]");
            Ok(())
        }
        Some(other) => {
            eprintln!("klaxon-stack: unknown argument {other:?}; usage: klaxon-stack [probe-imds]");
            std::process::exit(2);
        }
    }
}

fn serve() -> anyhow::Result<()> {
    eprintln!("Starting the local AWS stack (the first start builds its Python environment)…");
    let stack = LocalStack::start().context("starting the local AWS stack")?;
    println!("# The local AWS stack answers at {}", stack.endpoint());
    for (name, value) in stack.env() {
        println!("export {name}={value}");
    }
    println!("# Ctrl-C or end of input stops it. Type control commands as JSON lines.");
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading standard input")?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(command) => println!("{}", stack.control(command)?),
            Err(error) => eprintln!("not JSON: {error}"),
        }
    }
    Ok(())
}

fn probe_imds() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let instance_id = runtime.block_on(async {
        let client = aws_config::imds::Client::builder().build();
        client.get("/latest/meta-data/instance-id").await
    })?;
    println!("{}", instance_id.as_ref());
    Ok(())
}
