//! Which agents a fan-out or a schedule fire runs on: the one rule both use. Agents named
//! explicitly and/or those carrying every tag asked for; offline agents are left out when
//! asked (with why), and so are agents whose manifest does not list the script.

/// The parts of an agent that target selection looks at.
pub trait Candidate {
    fn name(&self) -> &str;
    fn tags(&self) -> &[String];
    fn online(&self) -> bool;
    /// Whether the agent may run `script` (an agent that never reported a manifest may).
    fn allows(&self, script: &str) -> bool;
}

/// What was asked for.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// These agents only (else every agent of the tenant).
    pub agents: Option<Vec<String>>,
    /// Every one of these tags (none: no tag condition).
    pub tags: Vec<String>,
    /// Leave out agents that are offline.
    pub only_online: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Agent names, sorted (by name for a tag selection; as asked for a list).
    pub targets: Vec<String>,
    /// Agents that were asked for (or matched) but get no job, and why.
    pub skipped: Vec<(String, String)>,
}

pub fn select<'a, A: Candidate + 'a>(
    agents: impl Fn(&str) -> Option<&'a A>,
    all: impl Iterator<Item = &'a A>,
    selector: &Selector,
    script: &str,
) -> Selection {
    let mut selection = Selection::default();
    let candidates: Vec<&A> = match &selector.agents {
        Some(names) => names
            .iter()
            .filter_map(|name| {
                let found = agents(name);
                if found.is_none() {
                    selection.skipped.push((name.clone(), "not registered".into()));
                }
                found
            })
            .collect(),
        None => {
            let mut every: Vec<&A> = all.collect();
            every.sort_by(|a, b| a.name().cmp(b.name()));
            every
        }
    };
    for agent in candidates {
        if !selector.tags.iter().all(|tag| agent.tags().contains(tag)) {
            continue;
        }
        let name = agent.name().to_owned();
        if selector.only_online && !agent.online() {
            selection.skipped.push((name, "offline".into()));
        } else if !agent.allows(script) {
            selection
                .skipped
                .push((name, format!("{script} is not in its manifest")));
        } else {
            selection.targets.push(name);
        }
    }
    selection
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Fake {
        name: String,
        tags: Vec<String>,
        online: bool,
        scripts: Option<Vec<&'static str>>,
    }

    impl Candidate for Fake {
        fn name(&self) -> &str {
            &self.name
        }
        fn tags(&self) -> &[String] {
            &self.tags
        }
        fn online(&self) -> bool {
            self.online
        }
        fn allows(&self, script: &str) -> bool {
            self.scripts.as_ref().is_none_or(|s| s.contains(&script))
        }
    }

    fn fleet() -> BTreeMap<String, Fake> {
        let agent = |name: &str, tags: &[&str], online: bool, scripts: Option<Vec<&'static str>>| {
            (
                name.to_owned(),
                Fake {
                    name: name.into(),
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    online,
                    scripts,
                },
            )
        };
        BTreeMap::from([
            agent("web-2", &["prod", "web"], true, Some(vec!["deploy.sh"])),
            agent("web-1", &["prod", "web"], true, Some(vec!["deploy.sh"])),
            agent("db-1", &["prod", "db"], false, Some(vec!["deploy.sh"])),
            agent("stage-1", &["staging", "web"], true, Some(vec!["backup.sh"])),
            agent("manual", &["prod"], true, None),
        ])
    }

    fn run(selector: Selector, script: &str) -> Selection {
        let agents = fleet();
        select(|name| agents.get(name), agents.values(), &selector, script)
    }

    #[test]
    fn tags_select_agents_carrying_all_of_them_sorted_by_name() {
        let selection = run(
            Selector {
                tags: vec!["prod".into(), "web".into()],
                only_online: true,
                ..Selector::default()
            },
            "deploy.sh",
        );
        assert_eq!(selection.targets, ["web-1", "web-2"]);
        assert!(selection.skipped.is_empty());
    }

    #[test]
    fn offline_and_unlisted_scripts_are_skipped_with_why() {
        let selection = run(
            Selector {
                tags: vec!["prod".into()],
                only_online: true,
                ..Selector::default()
            },
            "deploy.sh",
        );
        assert_eq!(selection.targets, ["manual", "web-1", "web-2"]);
        assert_eq!(selection.skipped, [("db-1".to_owned(), "offline".to_owned())]);

        let selection = run(
            Selector {
                agents: Some(vec!["stage-1".into(), "ghost".into(), "db-1".into()]),
                ..Selector::default()
            },
            "deploy.sh",
        );
        assert_eq!(
            selection.targets,
            ["db-1"],
            "offline agents are kept unless only_online"
        );
        assert_eq!(
            selection.skipped,
            [
                ("ghost".to_owned(), "not registered".to_owned()),
                ("stage-1".to_owned(), "deploy.sh is not in its manifest".to_owned()),
            ]
        );
    }

    #[test]
    fn names_and_tags_together_narrow_the_list() {
        let selection = run(
            Selector {
                agents: Some(vec!["web-2".into(), "stage-1".into()]),
                tags: vec!["prod".into()],
                only_online: true,
            },
            "deploy.sh",
        );
        assert_eq!(selection.targets, ["web-2"]);
        assert!(selection.skipped.is_empty());
    }
}
