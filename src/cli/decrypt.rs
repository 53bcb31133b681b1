//! `dbhaul decrypt FILE --key-env VAR`: a chunk written with `files.encryption_key_env`
//! back into the compressed CSV it was, streaming (see `destination::encrypt`).

use std::io::{Read, Write};

use super::{DecryptArgs, Exit, report_error};
use crate::config::Secret;
use crate::destination::encrypt::{Decrypt, TaskKey};

pub fn run(args: DecryptArgs) -> Exit {
    let key = match std::env::var(&args.key_env) {
        Ok(value) => match TaskKey::from_secret(&Secret::new(value)) {
            Ok(key) => key,
            Err(m) => {
                report_error(format!("`{}` {m}", args.key_env));
                return Exit::Usage;
            }
        },
        Err(_) => {
            report_error(format!(
                "--key-env names `{}`, which is not set; export it with the job's chunk key",
                args.key_env
            ));
            return Exit::Usage;
        }
    };
    let result = (|| -> Result<(), String> {
        let mut input = std::fs::File::open(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
        let mut output: Box<dyn Write> = match &args.output {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
            )),
            None => Box::new(std::io::stdout().lock()),
        };
        let what = |e: std::io::Error| format!("{}: {e}", args.file.display());
        let mut decrypt = Decrypt::new(&key);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buffer).map_err(what)?;
            if n == 0 {
                break;
            }
            output
                .write_all(&decrypt.push(&buffer[..n]).map_err(what)?)
                .map_err(what)?;
        }
        output
            .write_all(&decrypt.finish().map_err(what)?)
            .map_err(what)?;
        output.flush().map_err(what)
    })();
    match result {
        Ok(()) => Exit::Done,
        Err(message) => {
            // What was written is unchecked data: it must not stay looking like a result.
            if let Some(path) = &args.output {
                let _ = std::fs::remove_file(path);
            }
            report_error(message);
            Exit::Failed
        }
    }
}
