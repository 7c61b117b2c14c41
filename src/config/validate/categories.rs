//! `[[category]]` and `default_category`: each category on its own, then
//! the categories together against the link (min above max, the min
//! guarantees adding up to more than the link).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use super::super::model::{Category, CategoryId, Link, MAX_CATEGORIES};
use super::super::raw::{RawCategory, Value};
use super::super::units::{Bandwidth, Direction, Dscp, parse_duration};
use super::Problems;
use super::values::{int_in_range, parse_bool, parse_max, parse_min, parse_name};

/// The categories that are valid, with where each was in the file.
pub(super) struct Categories {
    /// Valid categories in file order, duplicates left out.
    pub(super) list: Vec<Category>,
    /// The file index of each of `list`: positions differ from file
    /// positions when a category is too broken to keep, and messages name
    /// the file's.
    file_index: Vec<usize>,
}

impl Categories {
    /// The names, for "known: ..." in messages.
    pub(super) fn known(&self) -> String {
        self.list
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The id of the category named `name`.
    pub(super) fn lookup(&self, name: &str) -> Option<CategoryId> {
        self.list
            .iter()
            .position(|c| c.name == name)
            .map(|i| CategoryId(i as u8))
    }

    /// True when no category is valid (then names cannot be checked).
    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

pub(super) fn categories(raw: &[RawCategory], p: &mut Problems) -> Categories {
    let mut categories: Vec<Category> = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    if raw.is_empty() {
        p.add(
            "category",
            "no categories defined; at least one [[category]] is required",
        );
    }
    if raw.len() > MAX_CATEGORIES {
        p.add(
            "category",
            format!(
                "{} categories defined; at most {MAX_CATEGORIES} are allowed",
                raw.len()
            ),
        );
    }
    let mut file_index: Vec<usize> = Vec::new();
    for (i, rc) in raw.iter().enumerate() {
        let key = format!("category[{i}]");
        if let Some(cat) = validate_category(rc, &key, p) {
            if let Some(first) = first_seen.get(&cat.name) {
                p.add(
                    format!("{key}.name"),
                    format!(
                        "duplicate category name \"{}\" (first defined at category[{first}])",
                        cat.name
                    ),
                );
                continue;
            }
            first_seen.insert(cat.name.clone(), i);
            categories.push(cat);
            file_index.push(i);
        }
    }
    Categories {
        list: categories,
        file_index,
    }
}

/// Checks the categories' min and max against each other and, when the
/// link is valid, against its rates.
pub(super) fn check_rates(cats: &Categories, link: Option<Link>, p: &mut Problems) {
    let categories = &cats.list;
    let file_index = &cats.file_index;
    // min above max can be seen without the link rate when both are written
    // the same way; with the link rate, the check below covers every case.
    let Some(link) = link else {
        for (cat, &i) in categories.iter().zip(file_index) {
            for dir in Direction::BOTH {
                let above = match (cat.min.get(dir), cat.max.get(dir)) {
                    (Bandwidth::Percent(a), Bandwidth::Percent(b)) => a > b,
                    (Bandwidth::Absolute(a), Bandwidth::Absolute(b)) => a > b,
                    _ => false,
                };
                if above {
                    p.add(
                        format!("category[{i}].min"),
                        format!(
                            "{}: min ({}) is above max ({}) for {dir}",
                            cat.name,
                            cat.min.get(dir),
                            cat.max.get(dir)
                        ),
                    );
                    break;
                }
            }
        }
        return;
    };
    // Rates against the link.
    for dir in Direction::BOTH {
        let link_rate = link.rate(dir);
        let mut sum: u128 = 0;
        for (cat, &i) in categories.iter().zip(file_index) {
            let min = cat.min.get(dir);
            let max = cat.max.get(dir);
            if let Bandwidth::Absolute(r) = min
                && r > link_rate
            {
                p.add(
                    format!("category[{i}].min"),
                    format!(
                        "{} min {r} is above the {dir} link rate ({link_rate})",
                        cat.name
                    ),
                );
            }
            let (min_r, max_r) = (min.resolve(link_rate), max.resolve(link_rate));
            if min_r > max_r {
                p.add(
                    format!("category[{i}].min"),
                    format!(
                        "{}: min ({min} = {min_r}) is above max ({max} = {max_r}) for {dir}",
                        cat.name
                    ),
                );
            }
            sum += u128::from(min_r.bps());
        }
        if sum > u128::from(link_rate.bps()) {
            let pct = sum as f64 * 100.0 / link_rate.bps() as f64;
            let parts: Vec<String> = categories
                .iter()
                .filter(|c| !c.min.get(dir).is_zero())
                .map(|c| format!("{} {}", c.name, c.min.get(dir)))
                .collect();
            p.add(
                "category",
                format!(
                    "the min guarantees add up to {pct:.0}% of the {dir} link ({link_rate}): {}; they must not exceed 100%",
                    parts.join(", ")
                ),
            );
        }
    }
}

/// `default_category`: the name of a category (checked only when some
/// category is valid, so that a broken list is not reported twice).
pub(super) fn default_category(
    v: &Option<Value>,
    cats: &Categories,
    p: &mut Problems,
) -> Option<String> {
    match v {
        None => {
            p.add(
                "default_category",
                "missing; name the category for traffic nothing else claims",
            );
            None
        }
        Some(v) => p.text("default_category", v).and_then(|name| {
            if cats.lookup(&name).is_none() && !cats.is_empty() {
                p.add(
                    "default_category",
                    format!("unknown category \"{name}\" (known: {})", cats.known()),
                );
                None
            } else {
                Some(name)
            }
        }),
    }
}

fn validate_category(rc: &RawCategory, key: &str, p: &mut Problems) -> Option<Category> {
    let name = p.required(
        &format!("{key}.name"),
        &rc.name,
        "every category needs a name",
        parse_name,
    );
    let priority = p.optional(&format!("{key}.priority"), &rc.priority, 4, |s| {
        int_in_range(0, 7, "priority")(s).map(|n| n as u8)
    });
    let weight = p.optional(&format!("{key}.weight"), &rc.weight, 10, |s| {
        int_in_range(1, 1000, "weight")(s).map(|n| n as u32)
    });
    let min = p.per_direction(&format!("{key}.min"), &rc.min, Bandwidth::NONE, parse_min);
    let max = p.per_direction(&format!("{key}.max"), &rc.max, Bandwidth::FULL, parse_max);
    let dscp = rc
        .dscp
        .as_ref()
        .and_then(|v| p.parse(&format!("{key}.dscp"), v, Dscp::from_str));
    let target = p.optional(
        &format!("{key}.codel_target"),
        &rc.codel_target,
        Duration::from_millis(5),
        parse_duration,
    );
    let interval = p.optional(
        &format!("{key}.codel_interval"),
        &rc.codel_interval,
        Duration::from_millis(100),
        parse_duration,
    );
    if target < Duration::from_micros(100) || target > Duration::from_secs(1) {
        p.add(
            format!("{key}.codel_target"),
            "codel_target must be between 100us and 1s",
        );
    } else if interval <= target || interval > Duration::from_secs(10) {
        p.add(
            format!("{key}.codel_interval"),
            "codel_interval must be above codel_target and at most 10s",
        );
    }
    let ecn = p.optional(&format!("{key}.ecn"), &rc.ecn, true, parse_bool);
    let description = rc
        .description
        .as_ref()
        .and_then(|v| p.text(&format!("{key}.description"), v));
    Some(Category {
        name: name?,
        description,
        priority,
        weight,
        min,
        max,
        dscp,
        codel_target: target,
        codel_interval: interval,
        ecn,
    })
}
