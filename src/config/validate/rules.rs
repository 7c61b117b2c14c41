//! `[[rule]]`: the admin's rules, each naming a category and its
//! conditions; names are unique.

use std::collections::HashMap;

use super::super::model::Rule;
use super::super::raw::RawRule;
use super::Problems;
use super::categories::Categories;
use super::conditions::{MatchScope, validate_match};
use super::values::parse_name;

pub(super) fn rules(raw: &[RawRule], cats: &Categories, p: &mut Problems) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut rule_names: HashMap<String, usize> = HashMap::new();
    for (i, rr) in raw.iter().enumerate() {
        let key = format!("rule[{i}]");
        if let Some(rule) = validate_rule(rr, &key, i, p, cats) {
            if let Some(first) = rule_names.get(&rule.name) {
                p.add(
                    format!("{key}.name"),
                    format!(
                        "duplicate rule name \"{}\" (first used at rule[{first}])",
                        rule.name
                    ),
                );
                continue;
            }
            rule_names.insert(rule.name.clone(), i);
            rules.push(rule);
        }
    }
    rules
}

fn validate_rule(
    rr: &RawRule,
    key: &str,
    index: usize,
    p: &mut Problems,
    cats: &Categories,
) -> Option<Rule> {
    let name = match &rr.name {
        Some(v) => p.parse(&format!("{key}.name"), v, parse_name),
        None => Some(format!("rule{index}")),
    };
    let category = p.required(
        &format!("{key}.category"),
        &rr.category,
        "name the category this rule assigns",
        |s| Ok(s.to_owned()),
    );
    let category_id = category.as_deref().and_then(|c| {
        let id = cats.lookup(c);
        if id.is_none() {
            p.add(
                format!("{key}.category"),
                format!("unknown category \"{c}\" (known: {})", cats.known()),
            );
        }
        id
    });
    let when = validate_match(&rr.when(), key, p, MatchScope::Rule);
    Some(Rule {
        name: name?,
        category: category?,
        category_id: category_id?,
        when,
    })
}
