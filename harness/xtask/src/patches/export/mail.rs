//! The pure part of the export: who signs, the trailers of a commit
//! message, the cover letter's text, and what a written patch must no
//! longer say.

use std::fmt;

use anyhow::{bail, Context, Result};

/// The author of every patch in the repository: a placeholder, not a person.
pub const PLACEHOLDER: &str = "Hello Hypercall Developers <devel@hello-hypercall.example.org>";

/// A person as git and mail headers name them: "Full Name <addr@host>".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// Top-level domains and domains reserved for documentation and tests
/// (RFC 2606, RFC 6761): nobody receives mail there, so an address in them
/// cannot stand behind a Signed-off-by.
const RESERVED_TLDS: &[&str] = &["example", "invalid", "localhost", "test", "local"];
const RESERVED_DOMAINS: &[&str] = &["example.com", "example.net", "example.org"];

impl Identity {
    /// Splits "Name <addr>" without judging it (for identities git reports).
    pub fn split(text: &str) -> Option<Identity> {
        let (name, rest) = text.trim().rsplit_once('<')?;
        let email = rest.strip_suffix('>')?;
        Some(Identity {
            name: name.trim().to_string(),
            email: email.to_string(),
        })
    }

    /// Validates a sender's identity as given to --signoff.
    pub fn parse(text: &str) -> Result<Identity> {
        let text = text.trim();
        let usage = format!("--signoff {text:?}: expected \"Full Name <addr@host>\"");
        let id = Identity::split(text).with_context(|| usage.clone())?;
        let placeholder = Identity::split(PLACEHOLDER).expect("the placeholder is well formed");
        if id.email.eq_ignore_ascii_case(&placeholder.email)
            || id.name.eq_ignore_ascii_case(&placeholder.name)
        {
            bail!(
                "--signoff {text:?}: that is the repository's placeholder author, which is nobody and \
                 cannot sign off; give your own name and address"
            );
        }
        if id.name.is_empty() {
            bail!("{usage}: the name before <addr> is missing");
        }
        if let Some(c) = id.name.chars().find(|c| c.is_control() || "<>\"@".contains(*c)) {
            bail!("{usage}: the name contains {c:?}");
        }
        let (local, domain) = id
            .email
            .split_once('@')
            .with_context(|| format!("{usage}: {:?} has no @", id.email))?;
        let local_ok = !local.is_empty()
            && local
                .chars()
                .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c));
        if !local_ok {
            bail!("{usage}: {local:?} is not a valid mailbox name");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !domain_ok {
            bail!("{usage}: {domain:?} is not a mail domain such as kernel.org");
        }
        let lower = domain.to_ascii_lowercase();
        let tld = labels.last().map(|l| l.to_ascii_lowercase()).unwrap_or_default();
        if RESERVED_TLDS.contains(&tld.as_str())
            || RESERVED_DOMAINS
                .iter()
                .any(|d| lower == *d || lower.ends_with(&format!(".{d}")))
        {
            bail!("{usage}: {domain} is reserved for examples and tests and receives no mail");
        }
        Ok(id)
    }
}

/// Rewrites a commit message for the sender: the placeholder's
/// Signed-off-by goes, and the sender's becomes the last trailer, since
/// whoever passes a patch on signs off last. Other trailers stay as they
/// are; a sender already signing off last is not added twice.
pub fn sign_off(message: &str, sender: &Identity) -> String {
    let dropped = format!("Signed-off-by: {PLACEHOLDER}");
    let mut lines: Vec<&str> = message.lines().filter(|l| l.trim_end() != dropped).collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let mine = format!("Signed-off-by: {sender}");
    if lines.last().map(|l| l.trim_end()) != Some(mine.as_str()) {
        // The trailer block is the last paragraph, unless that is the
        // subject, which never holds trailers.
        let start = lines.iter().rposition(|l| l.trim().is_empty()).map(|i| i + 1);
        let in_trailers = start.is_some_and(|s| lines[s..].iter().all(|l| is_trailer(l)));
        if !in_trailers {
            lines.push("");
        }
        lines.push(&mine);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// "Token: value" (git's trailer syntax), or the continuation of one.
fn is_trailer(line: &str) -> bool {
    if line.starts_with([' ', '\t']) {
        return true;
    }
    line.split_once(": ").is_some_and(|(token, _)| {
        !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// The value of the message's last Signed-off-by.
pub fn last_signoff(message: &str) -> Option<&str> {
    message
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Signed-off-by: "))
        .map(str::trim_end)
}

/// The author an exported commit gets: the sender in place of the
/// placeholder; anyone else keeps their patch (format-patch then writes
/// their name in the body, as the kernel's process asks).
pub fn author_for(original: &Identity, sender: &Identity) -> Identity {
    let placeholder = Identity::split(PLACEHOLDER).expect("the placeholder is well formed");
    if original.email.eq_ignore_ascii_case(&placeholder.email) {
        sender.clone()
    } else {
        original.clone()
    }
}

/// What the cover letter's author wrote: the subject without its
/// "[PATCH 0/n]" and the text before the shortlog and diffstat that
/// `git format-patch` adds.
pub fn cover_text(cover: &str) -> Result<(String, String)> {
    let (headers, body) = cover.split_once("\n\n").context("the cover letter has no body")?;
    // A header folded over several lines continues on lines that start
    // with white space; unfolding removes only the line breaks.
    let mut subject: Option<String> = None;
    for line in headers.lines() {
        match (&mut subject, line.strip_prefix("Subject: ")) {
            (None, Some(s)) => subject = Some(s.to_string()),
            (Some(s), None) if line.starts_with([' ', '\t']) => s.push_str(line),
            (Some(_), _) => break,
            (None, None) => {}
        }
    }
    let subject = subject.context("the cover letter has no Subject")?;
    let subject = match subject.strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map_or(subject.as_str(), |(_, s)| s),
        None => subject.as_str(),
    }
    .trim()
    .to_string();
    // The shortlog starts with "Author Name (5):" after a blank line; the
    // last such line is git's, whatever the text above quotes.
    let lines: Vec<&str> = body.lines().collect();
    let shortlog = (1..lines.len())
        .rev()
        .find(|&i| lines[i - 1].is_empty() && is_shortlog_head(lines[i]))
        .context("the cover letter has no shortlog (\"Name (n):\")")?;
    let text = lines[..shortlog].join("\n").trim_end().to_string();
    if subject.is_empty() || text.is_empty() {
        bail!("the cover letter's subject or text is empty");
    }
    Ok((subject, text))
}

/// "Hello Hypercall Developers (5):".
fn is_shortlog_head(line: &str) -> bool {
    let Some(rest) = line.strip_suffix("):") else {
        return false;
    };
    let Some((name, count)) = rest.rsplit_once(" (") else {
        return false;
    };
    !name.is_empty()
        && !line.starts_with(' ')
        && !count.is_empty()
        && count.bytes().all(|b| b.is_ascii_digit())
}

/// Puts the subject and text into the cover letter `git format-patch
/// --cover-letter` wrote, in place of its two markers.
pub fn fill_cover(generated: &str, subject: &str, text: &str) -> Result<String> {
    const SUBJECT: &str = "*** SUBJECT HERE ***";
    const BLURB: &str = "*** BLURB HERE ***";
    if generated.matches(SUBJECT).count() != 1 || generated.matches(BLURB).count() != 1 {
        bail!("git format-patch wrote a cover letter without its two markers");
    }
    Ok(generated.replacen(SUBJECT, subject, 1).replacen(BLURB, text, 1))
}

/// Problems in the written files' text: a From: header that is not the
/// sender, markers left in the cover letter, or the placeholder's address
/// anywhere.
pub fn leftovers(files: &[(String, String)], sender: &Identity) -> Vec<String> {
    let placeholder = Identity::split(PLACEHOLDER).expect("the placeholder is well formed");
    let mut problems = Vec::new();
    for (name, text) in files {
        // The address stays readable when a non-ASCII name is encoded.
        let from = text
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("From: "));
        if !from.is_some_and(|f| f.ends_with(&format!("<{}>", sender.email))) {
            problems.push(format!(
                "{name}: From: is {}, not {sender}",
                from.unwrap_or("missing")
            ));
        }
        if text.contains("*** SUBJECT HERE ***") || text.contains("*** BLURB HERE ***") {
            problems.push(format!("{name}: the cover letter's markers are still there"));
        }
        if text.contains(&placeholder.email) {
            problems.push(format!("{name}: still names {}", placeholder.email));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Identity {
        Identity::parse("Ada Lovelace <ada@lovelace.name>").unwrap()
    }

    #[test]
    fn identities_are_validated() {
        assert_eq!(
            Identity::parse("  Ada Lovelace <ada@lovelace.name> ").unwrap(),
            Identity {
                name: "Ada Lovelace".into(),
                email: "ada@lovelace.name".into()
            }
        );
        assert_eq!(ada().to_string(), "Ada Lovelace <ada@lovelace.name>");
        assert!(Identity::parse("Zoë Ångström <zoe+kvm@angstrom-lab.net>").is_ok());
        let refused = [
            (PLACEHOLDER, "placeholder"),
            ("Ada <devel@hello-hypercall.example.org>", "placeholder"),
            ("Hello Hypercall Developers <ada@lovelace.name>", "placeholder"),
            ("ada@lovelace.name", "expected"),
            ("<ada@lovelace.name>", "name"),
            ("Ada Lovelace ada@lovelace.name>", "expected"),
            ("Ada Lovelace <ada@lovelace.name", "expected"),
            ("Ada <Lovelace> <ada@lovelace.name>", "name contains"),
            ("ada@lovelace.name <ada@lovelace.name>", "name contains"),
            ("Ada Lovelace <ada.lovelace.name>", "no @"),
            ("Ada Lovelace <ada@lovelace>", "not a mail domain"),
            ("Ada Lovelace <ada@@lovelace.name>", "not a mail domain"),
            ("Ada Lovelace <ada@-x.name>", "not a mail domain"),
            ("Ada Lovelace <ada@lovelace..name>", "not a mail domain"),
            ("Ada Lovelace <a da@lovelace.name>", "mailbox"),
            ("Ada Lovelace <@lovelace.name>", "mailbox"),
            ("Ada Lovelace <ada@example.com>", "reserved"),
            ("Ada Lovelace <ada@mail.example.org>", "reserved"),
            ("Ada Lovelace <base@hello-hypercall.invalid>", "reserved"),
            ("Ada Lovelace <ada@box.test>", "reserved"),
        ];
        for (text, why) in refused {
            let err = Identity::parse(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    const BODY: &str = "KVM: x86: Add it\n\nWhy it is needed.\n\n";

    #[test]
    fn placeholder_signoff_becomes_the_senders() {
        let msg = format!("{BODY}Signed-off-by: {PLACEHOLDER}\n");
        assert_eq!(
            sign_off(&msg, &ada()),
            format!("{BODY}Signed-off-by: Ada Lovelace <ada@lovelace.name>\n")
        );
    }

    #[test]
    fn other_trailers_stay_and_the_sender_signs_last() {
        let msg = format!(
            "{BODY}Reported-by: Bo <bo@b.org>\nSigned-off-by: {PLACEHOLDER}\nLink: https://lore.kernel.org/r/1\n"
        );
        assert_eq!(
            sign_off(&msg, &ada()),
            format!(
                "{BODY}Reported-by: Bo <bo@b.org>\nLink: https://lore.kernel.org/r/1\n\
                 Signed-off-by: Ada Lovelace <ada@lovelace.name>\n"
            )
        );
    }

    #[test]
    fn a_sender_signing_last_is_not_added_twice() {
        let msg = format!("{BODY}Signed-off-by: Ada Lovelace <ada@lovelace.name>\n");
        assert_eq!(sign_off(&msg, &ada()), msg);
        // Signed off earlier, then someone else: the sender signs again, last.
        let msg =
            format!("{BODY}Signed-off-by: Ada Lovelace <ada@lovelace.name>\nSigned-off-by: Bo <bo@b.org>\n");
        assert_eq!(
            sign_off(&msg, &ada()),
            format!("{msg}Signed-off-by: Ada Lovelace <ada@lovelace.name>\n")
        );
    }

    #[test]
    fn a_message_without_trailers_gets_its_own_paragraph() {
        assert_eq!(
            sign_off(
                "KVM: x86: Add it\n\nWhy: it is needed, see below.\nMore text.\n",
                &ada()
            ),
            "KVM: x86: Add it\n\nWhy: it is needed, see below.\nMore text.\n\n\
             Signed-off-by: Ada Lovelace <ada@lovelace.name>\n"
        );
        // The subject alone is no trailer block, even when it looks like one.
        assert_eq!(
            sign_off("KVM: x86: Add it\n", &ada()),
            "KVM: x86: Add it\n\nSigned-off-by: Ada Lovelace <ada@lovelace.name>\n"
        );
    }

    #[test]
    fn placeholder_authors_are_replaced_and_others_kept() {
        let placeholder = Identity::split(PLACEHOLDER).unwrap();
        assert_eq!(author_for(&placeholder, &ada()), ada());
        let bo = Identity::split("Bo <bo@b.org>").unwrap();
        assert_eq!(author_for(&bo, &ada()), bo);
        assert_eq!(
            last_signoff("a\n\nSigned-off-by: X <x@y.z>\nSigned-off-by: Q <q@y.z>\n"),
            Some("Q <q@y.z>")
        );
        assert_eq!(last_signoff("a\n"), None);
    }

    const COVER: &str = "From a982b944ec36f6c432d3ad087890eff998fcb172 Mon Sep 17 00:00:00 2001\n\
        From: Hello Hypercall Developers <devel@hello-hypercall.example.org>\n\
        Date: Sat, 21 Nov 2026 13:12:20 +0000\n\
        Subject: [PATCH 0/2] KVM: x86: Add KVM_HC_HELLO_HYPERCALL and a\n hello_hypercall() syscall\n\
        \n\
        This series adds a hypercall.\n\
        \n\
        Quoted (2):\n  not the shortlog\n\
        \n\
        Cc: kvm@vger.kernel.org\n\
        \n\
        Hello Hypercall Developers (2):\n  KVM: x86: Add it\n  KVM: x86: Use it\n\
        \n arch/x86/kvm/x86.c | 1 +\n\
        \n\
        base-commit: 88e910dca3d30898d469ed7d3ce5dc90732b2849\n-- \n2.47.3\n";

    #[test]
    fn cover_text_is_subject_and_blurb() {
        let (subject, text) = cover_text(COVER).unwrap();
        assert_eq!(
            subject,
            "KVM: x86: Add KVM_HC_HELLO_HYPERCALL and a hello_hypercall() syscall"
        );
        assert_eq!(
            text,
            "This series adds a hypercall.\n\nQuoted (2):\n  not the shortlog\n\nCc: kvm@vger.kernel.org"
        );
        assert!(cover_text("Subject: x\n\nno shortlog\n").is_err());
    }

    #[test]
    fn cover_is_filled_once() {
        let generated =
            "From: Ada Lovelace <ada@lovelace.name>\nSubject: [PATCH 0/2] *** SUBJECT HERE ***\n\n\
                         *** BLURB HERE ***\n\nAda Lovelace (2):\n";
        assert_eq!(
            fill_cover(generated, "KVM: x86: Hello", "Text.\n\nMore.").unwrap(),
            "From: Ada Lovelace <ada@lovelace.name>\nSubject: [PATCH 0/2] KVM: x86: Hello\n\n\
             Text.\n\nMore.\n\nAda Lovelace (2):\n"
        );
        assert!(fill_cover("Subject: x\n\nbody\n", "s", "t").is_err());
    }

    #[test]
    fn leftovers_name_the_file() {
        let ok = "From 1 Mon Sep 17 00:00:00 2001\nFrom: Ada Lovelace <ada@lovelace.name>\nSubject: x\n\nFrom: Bo <bo@b.org>\n";
        let files = vec![
            (
                "0000-cover-letter.patch".to_string(),
                format!("From: {PLACEHOLDER}\n\n*** BLURB HERE ***\n"),
            ),
            ("0001-a.patch".to_string(), ok.to_string()),
            (
                "0002-b.patch".to_string(),
                "From: =?UTF-8?q?Ada=20L=C3=B6velace?= <ada@lovelace.name>\n\n".to_string(),
            ),
            (
                "0003-c.patch".to_string(),
                "Subject: x\n\nFrom: Ada Lovelace <ada@lovelace.name>\n".to_string(),
            ),
        ];
        assert_eq!(
            leftovers(&files, &ada()),
            vec![
                "0000-cover-letter.patch: From: is Hello Hypercall Developers <devel@hello-hypercall.example.org>, \
                 not Ada Lovelace <ada@lovelace.name>",
                "0000-cover-letter.patch: the cover letter's markers are still there",
                "0000-cover-letter.patch: still names devel@hello-hypercall.example.org",
                "0003-c.patch: From: is missing, not Ada Lovelace <ada@lovelace.name>",
            ]
        );
    }
}
