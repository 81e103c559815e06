//! `klaxon-agent --status`: how far each file is shipped, read from the state directory.

use std::io::{self, Write};

use crate::config::ValidConfig;
use crate::tail::checkpoint::Checkpoints;
use crate::tail::identity::FileKey;

/// Prints one line per checkpointed file: path, identity, acknowledged offset, bytes
/// behind; as a table, or (`json`) as one JSON object a line.
pub fn print_status(config: &ValidConfig, json: bool, out: &mut impl Write) -> io::Result<()> {
    let checkpoints = Checkpoints::load(&config.state_dir)?;
    if !json {
        writeln!(out, "{:<50} {:>20} {:>14} {:>14}", "PATH", "IDENTITY", "ACKNOWLEDGED", "BEHIND")?;
    }
    for checkpoint in checkpoints.iter() {
        let behind = match std::fs::metadata(&checkpoint.path) {
            Ok(metadata) if FileKey::of(&metadata) == checkpoint.key => {
                metadata.len().saturating_sub(checkpoint.position.offset).to_string()
            }
            Ok(_) => "rotated".to_owned(),
            Err(_) => "gone".to_owned(),
        };
        let identity = format!("{}:{}", checkpoint.key.dev, checkpoint.key.ino);
        if json {
            let line = serde_json::json!({
                "path": checkpoint.path,
                "identity": identity,
                "offset": checkpoint.position.offset,
                "parts_done": checkpoint.position.parts_done,
                "behind": behind,
            });
            writeln!(out, "{line}")?;
            continue;
        }
        let mut acknowledged = checkpoint.position.offset.to_string();
        if checkpoint.position.parts_done > 0 {
            acknowledged.push_str(&format!("+{}p", checkpoint.position.parts_done));
        }
        writeln!(
            out,
            "{:<50} {identity:>20} {acknowledged:>14} {behind:>14}",
            checkpoint.path.display()
        )?;
    }
    Ok(())
}
