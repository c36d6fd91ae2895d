//! Kconfig fragments and the check that olddefconfig kept every option a
//! fragment asked for (it silently drops those with unmet dependencies).

use std::collections::BTreeMap;

/// One option setting: `CONFIG_X=y` is `("CONFIG_X", Some("y"))`, and
/// `# CONFIG_X is not set` is `("CONFIG_X", None)`.
pub type Setting = (String, Option<String>);

/// Reads the options of a fragment or a .config, ignoring comments.
pub fn parse(text: &str) -> Vec<Setting> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# ") {
                let name = rest.strip_suffix(" is not set")?;
                return name.starts_with("CONFIG_").then(|| (name.to_string(), None));
            }
            let (name, value) = line.split_once('=')?;
            name.starts_with("CONFIG_")
                .then(|| (name.to_string(), Some(value.to_string())))
        })
        .collect()
}

/// Every requested option whose value in `config` differs, as
/// "CONFIG_X=y (got: not set)". Empty when all survived.
pub fn missing(wanted: &[Setting], config: &str) -> Vec<String> {
    let got: BTreeMap<String, Option<String>> = parse(config).into_iter().collect();
    wanted
        .iter()
        .filter_map(|(name, want)| {
            let have = got.get(name).cloned().flatten();
            if have == *want {
                return None;
            }
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "not set".into());
            Some(format!("{name}={} (got: {})", show(want), show(&have)))
        })
        .collect()
}

/// True when a Kconfig file's text defines `symbol` ("config SYMBOL").
pub fn defines(kconfig: &str, symbol: &str) -> bool {
    kconfig.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("config") && w.next() == Some(symbol)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_defines_an_option_only_by_its_config_line() {
        let kconfig = "config KVM_SW_PROTECTED_VM\n\tbool \"x\"\n\tdepends on KVM_SW_PROTECTED_VM_X\n";
        assert!(defines(kconfig, "KVM_SW_PROTECTED_VM"));
        assert!(!defines(kconfig, "KVM_SW_PROTECTED"));
        assert!(!defines("menuconfig KVM\n", "KVM_SW_PROTECTED_VM"));
    }

    const FRAGMENT: &str = "# --- why ---\nCONFIG_KVM=y\n# CONFIG_BLOCK is not set\nCONFIG_NR=4\n";

    #[test]
    fn fragment_options_and_comments() {
        assert_eq!(
            parse(FRAGMENT),
            vec![
                ("CONFIG_KVM".into(), Some("y".into())),
                ("CONFIG_BLOCK".into(), None),
                ("CONFIG_NR".into(), Some("4".into())),
            ]
        );
    }

    #[test]
    fn all_kept_is_clean() {
        let config = "CONFIG_KVM=y\nCONFIG_NR=4\n# CONFIG_BLOCK is not set\n";
        assert!(missing(&parse(FRAGMENT), config).is_empty());
    }

    #[test]
    fn dropped_options_are_named() {
        let config = "CONFIG_BLOCK=y\nCONFIG_NR=8\n";
        assert_eq!(
            missing(&parse(FRAGMENT), config),
            vec![
                "CONFIG_KVM=y (got: not set)",
                "CONFIG_BLOCK=not set (got: y)",
                "CONFIG_NR=4 (got: 8)",
            ]
        );
    }
}
