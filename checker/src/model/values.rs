//! Interned values: a key's [`Values`] table turns the history's JSON
//! values into small integers, so the search copies and hashes `u32`s, and
//! builds `append` results without spelling the strings out.

use std::fmt;

use serde_json::Value;

use crate::fxhash::FxHashMap;

/// An interned value: an index into a key's [`Values`].
pub type Val = u32;

/// A value as the models compare it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Atom {
    Null,
    Int(i64),
    Str(Box<str>),
    /// Anything else (floats, arrays, maps), compared by its JSON text.
    Json(Box<str>),
}

impl Atom {
    pub fn from_json(v: &Value) -> Atom {
        match v {
            Value::Null => Atom::Null,
            Value::String(s) => Atom::Str(s.as_str().into()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Atom::Int(i),
                None => Atom::Json(n.to_string().into()),
            },
            other => Atom::Json(other.to_string().into()),
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Null => f.write_str("null"),
            Atom::Int(i) => write!(f, "{i}"),
            Atom::Str(s) => write!(f, "{s:?}"),
            Atom::Json(j) => f.write_str(j),
        }
    }
}

/// A key's value table: interning makes states `u32` and equality cheap.
///
/// Strings made by `append` are not built while searching: such a value is
/// stored as (parent value, suffix) with its length and a polynomial hash,
/// which compose (`H(a+b) = H(a)·P^|b| + H(b)`). Identity stays canonical
/// (equal strings, equal ids, however they were made): a new append result
/// is looked up by (length, hash) among all strings, and only a hash match
/// is confirmed by spelling both strings out. Building and hashing the
/// whole string for every append dominated the kv corpus' profile.
#[derive(Clone, Debug, Default)]
pub struct Values {
    entries: Vec<Entry>,
    /// Base values (from the history) -> id.
    ids: FxHashMap<Atom, Val>,
    /// (length, hash) of every string value -> its id.
    strings: FxHashMap<(u32, u64), Val>,
    /// Further strings whose (length, hash) was taken by another string:
    /// a 64-bit collision, so practically never used, but correct if so.
    collisions: Vec<((u32, u64), Val)>,
    /// (state, suffix) -> state after the append, so each transition is
    /// computed once.
    appends: FxHashMap<(Val, Val), Val>,
}

#[derive(Clone, Debug)]
struct Entry {
    /// `Some` for a base value; `None` for an append result.
    atom: Option<Atom>,
    /// For an append result: the value appended to and the suffix.
    parent: Val,
    suffix: Val,
    /// For strings (and null, which appends treat as ""): length, hash.
    len: u32,
    hash: u64,
}

const POLY: u64 = 0x100_0000_01b3;

fn poly_hash(s: &str) -> u64 {
    s.bytes()
        .fold(0u64, |h, b| h.wrapping_mul(POLY).wrapping_add(b as u64 + 1))
}

fn poly_pow(mut n: u32) -> u64 {
    let (mut base, mut acc) = (POLY, 1u64);
    while n > 0 {
        if n & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        n >>= 1;
    }
    acc
}

impl Values {
    pub fn intern(&mut self, atom: Atom) -> Val {
        if let Some(&id) = self.ids.get(&atom) {
            return id;
        }
        let (len, hash) = match &atom {
            Atom::Str(s) => (s.len() as u32, poly_hash(s)),
            _ => (0, 0),
        };
        let id = self.entries.len() as Val;
        if let Atom::Str(s) = &atom {
            // An append may have made this string already (only possible
            // if the history is interned after searching, but keep ids
            // canonical regardless).
            if let Some(found) = self.find_string(len, hash, s) {
                self.ids.insert(atom, found);
                return found;
            }
            self.add_string(len, hash, id);
        }
        self.entries.push(Entry {
            atom: Some(atom.clone()),
            parent: 0,
            suffix: 0,
            len,
            hash,
        });
        self.ids.insert(atom, id);
        id
    }

    fn add_string(&mut self, len: u32, hash: u64, id: Val) {
        match self.strings.entry((len, hash)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.push(((len, hash), id));
            }
        }
    }

    /// Ids of strings with this signature (almost always 0 or 1).
    fn candidates(&self, len: u32, hash: u64) -> impl Iterator<Item = Val> + '_ {
        let first = self.strings.get(&(len, hash)).copied();
        let more = self
            .collisions
            .iter()
            .filter(move |(k, _)| first.is_some() && *k == (len, hash))
            .map(|&(_, id)| id);
        first.into_iter().chain(more)
    }

    fn find_string(&self, len: u32, hash: u64, s: &str) -> Option<Val> {
        self.candidates(len, hash).find(|&c| self.spells(c, s))
    }

    /// Whether value `id` spells `s`, walking its append chain from the
    /// end without building the string.
    fn spells(&self, mut id: Val, mut s: &str) -> bool {
        loop {
            let e = &self.entries[id as usize];
            match &e.atom {
                Some(Atom::Str(t)) => return t.as_ref() == s,
                Some(Atom::Null) => return s.is_empty(),
                Some(_) => return false,
                None => {
                    let Some(Atom::Str(t)) = &self.entries[e.suffix as usize].atom else {
                        return false;
                    };
                    match s.strip_suffix(t.as_ref()) {
                        Some(rest) => s = rest,
                        None => return false,
                    }
                    id = e.parent;
                }
            }
        }
    }

    /// The string a value spells (`None` for non-strings; null is "").
    pub fn text(&self, id: Val) -> Option<String> {
        let mut parts = Vec::new();
        let mut at = id;
        loop {
            let e = &self.entries[at as usize];
            match &e.atom {
                Some(Atom::Str(s)) => {
                    parts.push(s.as_ref());
                    break;
                }
                Some(Atom::Null) => break,
                Some(_) => return None,
                None => {
                    match &self.entries[e.suffix as usize].atom {
                        Some(Atom::Str(s)) => parts.push(s.as_ref()),
                        _ => return None,
                    }
                    at = e.parent;
                }
            }
        }
        let mut out = String::new();
        for p in parts.iter().rev() {
            out.push_str(p);
        }
        Some(out)
    }

    /// The value `state` + `suffix`; `None` if either is not a string.
    pub fn append(&mut self, state: Val, suffix: Val) -> Option<Val> {
        if let Some(&next) = self.appends.get(&(state, suffix)) {
            return Some(next);
        }
        let (a, b) = (
            &self.entries[state as usize],
            &self.entries[suffix as usize],
        );
        let base_ok = matches!(a.atom, None | Some(Atom::Null) | Some(Atom::Str(_)));
        if !base_ok || !matches!(b.atom, Some(Atom::Str(_))) {
            return None;
        }
        let len = a.len + b.len;
        let hash = a.hash.wrapping_mul(poly_pow(b.len)).wrapping_add(b.hash);
        // A signature match means an equal string, almost surely: confirm
        // it (this happens when the result is a value the history reads).
        let existing = self.candidates(len, hash).find(|&c| {
            let Some(Atom::Str(t)) = &self.entries[suffix as usize].atom else {
                return false;
            };
            match &self.entries[c as usize].atom {
                Some(Atom::Str(cs)) => cs
                    .strip_suffix(t.as_ref())
                    .is_some_and(|rest| self.spells(state, rest)),
                _ => self.text(c).is_some_and(|cs| {
                    cs.strip_suffix(t.as_ref())
                        .is_some_and(|rest| self.spells(state, rest))
                }),
            }
        });
        let next = match existing {
            Some(id) => id,
            None => {
                let id = self.entries.len() as Val;
                self.entries.push(Entry {
                    atom: None,
                    parent: state,
                    suffix,
                    len,
                    hash,
                });
                self.add_string(len, hash, id);
                id
            }
        };
        self.appends.insert((state, suffix), next);
        Some(next)
    }

    /// The value as the explanations show it.
    pub fn display(&self, id: Val) -> String {
        match &self.entries[id as usize].atom {
            Some(atom) => atom.to_string(),
            None => format!("{:?}", self.text(id).unwrap_or_default()),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_strings_keep_canonical_ids() {
        let mut v = Values::default();
        let null = v.intern(Atom::Null);
        let x = v.intern(Atom::Str("x".into()));
        let y = v.intern(Atom::Str("y".into()));
        let xy = v.intern(Atom::Str("xy".into()));
        let n = v.intern(Atom::Int(3));
        let after_x = v.append(null, x).unwrap();
        assert_eq!(after_x, x, "null + \"x\" is the value \"x\"");
        assert_eq!(v.append(after_x, y), Some(xy), "\"x\" + \"y\" is \"xy\"");
        let yx = v.append(y, x).unwrap();
        assert_ne!(yx, xy);
        assert_eq!(v.display(yx), "\"yx\"");
        assert_eq!(
            v.append(yx, xy).and_then(|id| v.text(id)).as_deref(),
            Some("yxxy")
        );
        assert_eq!(v.append(n, x), None, "cannot append to an integer");
    }
}
