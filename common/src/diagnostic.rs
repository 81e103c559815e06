//! Problems found in a configuration file, located as `FILE:LINE:COL: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in one file, at a position people can jump to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
}

impl Problem {
    /// A problem at the start of `span` (byte offsets into `source`).
    pub fn at(file: &Path, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = span.start.min(source.len());
        let before = &source[..source.floor_char_boundary(start)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Problem { file: file.to_owned(), line, column, message: message.into() }
    }

    /// A problem with the file as a whole (it cannot be read, say): line 1, column 1.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Problem { file: file.to_owned(), line: 1, column: 1, message: message.into() }
    }

    /// A TOML syntax or type error, where the parser located it.
    pub fn from_toml(file: &Path, source: &str, error: &toml::de::Error) -> Self {
        let span = error.span().unwrap_or(0..0);
        Problem::at(file, source, span, error.message().trim_end())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// Every problem found in a configuration, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let source = "a = 1\nbé = \"x\"\n";
        let at = |offset| {
            let p = Problem::at(Path::new("f.toml"), source, offset..offset, "m");
            (p.line, p.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters: the value starts at column 6.
        assert_eq!(at(12), (2, 6));
        let problem = Problem::at(Path::new("f.toml"), source, 12..13, "bad value");
        assert_eq!(problem.to_string(), "f.toml:2:6: bad value");
    }
}
