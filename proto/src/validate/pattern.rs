//! The `string.pattern` rule: a regular expression in RE2 syntax, as
//! protovalidate specifies, compiled once with the `regex` crate.
//!
//! The two syntaxes are close but not equal, so a pattern is first
//! rewritten where their meanings differ:
//! - `\d`, `\w`, `\s` and `\b` are ASCII-only in RE2 (Unicode-aware in
//!   `regex`): they become explicit ASCII classes and `(?-u:\b)`;
//! - `\Q...\E` quotes a literal in RE2 (unknown to `regex`);
//! - octal escapes (`\0`, `\12`, `\123`) become `\x{..}`;
//! - `\<` and `\>` are literal characters in RE2 (word boundaries in
//!   `regex`);
//! - inside a class, `[` is a literal in RE2 and `&&`, `--`, `~~` are not
//!   set operations, so those characters are escaped;
//! - a `{` that does not start a repetition is a literal in RE2.
//!
//! Everything else is passed through, and `regex` reports anything it
//! cannot compile, which refuses the schema at registration.

use std::fmt;

use regex::Regex;

/// A compiled `string.pattern` rule.
#[derive(Clone)]
pub(crate) struct Pattern {
    /// The pattern as written in the schema, quoted in violation messages.
    source: String,
    regex: Regex,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl Pattern {
    /// Compiles an RE2 pattern; the error says what is wrong with it.
    pub(crate) fn new(source: &str) -> Result<Pattern, String> {
        let translated = translate(source)?;
        // The crate's default size limit keeps a hostile schema from making
        // the broker build an enormous automaton.
        let regex = Regex::new(&translated).map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "the pattern is too large".to_owned(),
            // The parser's message quotes the (translated) pattern with a
            // caret under the fault; the last line holds the reason.
            other => other
                .to_string()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid pattern")
                .trim()
                .trim_start_matches("error: ")
                .to_owned(),
        })?;
        Ok(Pattern {
            source: source.to_owned(),
            regex,
        })
    }

    pub(crate) fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = r"\t\n\x0C\r ";

/// Rewrites an RE2 pattern into the `regex` crate's syntax (see the module
/// documentation for what changes).
fn translate(re2: &str) -> Result<String, String> {
    let chars: Vec<char> = re2.chars().collect();
    let mut out = String::with_capacity(re2.len() + 8);
    let mut i = 0;
    // Inside a bracketed class, and whether the previous item was a `-`.
    let mut in_class = false;
    let mut after_dash = false;
    while let Some(&c) = chars.get(i) {
        i += 1;
        if c == '\\' {
            let Some(&e) = chars.get(i) else {
                return Err("the pattern ends with a lone backslash".to_owned());
            };
            i += 1;
            after_dash = false;
            match e {
                'd' | 'w' | 's' => {
                    let set = perl_set(e);
                    if in_class {
                        out.push_str(set);
                    } else {
                        out.push('[');
                        out.push_str(set);
                        out.push(']');
                    }
                }
                'D' | 'W' | 'S' => {
                    // A nested negated class also works inside a class.
                    out.push_str("[^");
                    out.push_str(perl_set(e.to_ascii_lowercase()));
                    out.push(']');
                }
                'b' | 'B' if !in_class => {
                    out.push_str("(?-u:\\");
                    out.push(e);
                    out.push(')');
                }
                '<' | '>' => out.push(e),
                'Q' if !in_class => {
                    let mut literal = String::new();
                    while let Some(&q) = chars.get(i) {
                        if q == '\\' && chars.get(i + 1) == Some(&'E') {
                            i += 2;
                            break;
                        }
                        literal.push(q);
                        i += 1;
                    }
                    out.push_str(&regex::escape(&literal));
                }
                '0'..='7' => {
                    let mut value = e.to_digit(8).unwrap_or(0);
                    let mut digits = 1;
                    while digits < 3
                        && let Some(d) = chars.get(i).and_then(|d| d.to_digit(8))
                    {
                        value = value * 8 + d;
                        digits += 1;
                        i += 1;
                    }
                    if e != '0' && digits == 1 {
                        return Err(format!("backreference \\{e} is not supported"));
                    }
                    out.push_str(&format!("\\x{{{value:x}}}"));
                }
                'p' | 'P' | 'x' => {
                    out.push('\\');
                    out.push(e);
                    // Copy a braced argument whole, so its contents are not
                    // rewritten.
                    if chars.get(i) == Some(&'{') {
                        while let Some(&b) = chars.get(i) {
                            out.push(b);
                            i += 1;
                            if b == '}' {
                                break;
                            }
                        }
                    }
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            continue;
        }
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    out.push(']');
                }
                '[' if chars.get(i) == Some(&':') => {
                    // A POSIX class such as `[:alpha:]`, the same in both.
                    let end = (i + 1..chars.len().saturating_sub(1))
                        .find(|&j| chars[j] == ':' && chars[j + 1] == ']');
                    match end {
                        Some(end) => {
                            out.extend(&chars[i - 1..end + 2]);
                            i = end + 2;
                        }
                        None => out.push_str("\\["),
                    }
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                '-' if after_dash => out.push_str("\\-"),
                _ => out.push(c),
            }
            after_dash = c == '-';
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                after_dash = false;
                out.push('[');
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // A `]` first in a class is a literal.
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            '{' if !is_repetition(&chars[i..]) => out.push_str("\\{"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn perl_set(class: char) -> &'static str {
    match class {
        'd' => DIGIT,
        'w' => WORD,
        _ => SPACE,
    }
}

/// `rest` (after a `{`) is `n}`, `n,}` or `n,m}`.
fn is_repetition(rest: &[char]) -> bool {
    let Some(close) = rest.iter().position(|&c| c == '}') else {
        return false;
    };
    let body: String = rest[..close].iter().collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match body.split_once(',') {
        None => digits(&body),
        Some((min, max)) => digits(min) && (max.is_empty() || digits(max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, s: &str) -> bool {
        Pattern::new(pattern).unwrap().is_match(s)
    }

    #[test]
    fn perl_classes_are_ascii_as_in_re2() {
        assert!(matches(r"^\d+$", "0123456789"));
        // Arabic-Indic digits are `\p{Nd}` but not RE2 digits.
        assert!(!matches(r"^\d+$", "١٢٣"));
        assert!(matches(r"^\w+$", "abc_XYZ_09"));
        assert!(!matches(r"^\w+$", "héllo"));
        assert!(matches(r"^\s$", "\t"));
        assert!(!matches(r"^\s$", "\u{a0}"));
        assert!(matches(r"^\D\W\S$", "a.b"));
        assert!(matches(r"^[\d.]+$", "1.5"));
        assert!(matches(r"^[^\D]+$", "42"));
        assert!(!matches(r"^[^\D]+$", "4x"));
        assert!(matches(r"\bcat\b", "a cat sat"));
        assert!(!matches(r"\bcat\b", "concatenate"));
    }

    #[test]
    fn re2_literals_and_escapes() {
        assert!(matches(r"^\Qa.b*c\E$", "a.b*c"));
        assert!(!matches(r"^\Qa.b*c\E$", "aXbbc"));
        assert!(matches(r"^\Q(unterminated$", "(unterminated$"));
        assert!(!matches(r"^\Q(unterminated$", "x(unterminated$"));
        assert!(matches(r"^\101\0$", "A\0"));
        assert!(matches(r"^a{2}b{1,}c{0,1}$", "aabbc"));
        assert!(matches(r"^a{,2}$", "a{,2}"));
        assert!(matches(r"^x{$", "x{"));
        assert!(matches(r"^[[]$", "["));
        assert!(matches(r"^[]a]+$", "]a]"));
        assert!(matches(r"^[a&&b]+$", "a&b"));
        assert!(matches(r"^[~~]$", "~"));
        assert!(matches(r"^[[:alpha:]]+$", "abc"));
        assert!(matches(r"^\<\>$", "<>"));
        assert!(matches(r"^\p{Greek}+\pL$", "αβγx"));
        assert!(matches(r"^\x{1F600}\x41$", "😀A"));
        assert!(matches(r"(?i)^straße$", "STRAßE"));
    }

    #[test]
    fn invalid_patterns_say_why() {
        for (bad, needle) in [
            ("(", "unclosed group"),
            ("a)", "unopened group"),
            ("[a-", "unclosed character class"),
            (r"\1", "backreference"),
            ("a\\", "lone backslash"),
            (r"(?<=a)b", "look-around"),
            ("(?:a{1000}){1000}", "too large"),
        ] {
            let err = Pattern::new(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
