//! Map keys of `N` strings that a borrowed `[&str; N]` finds without
//! allocating: a map keyed by `[String; N]` (or any owned string type) is
//! searched with `&[a, b] as &dyn StrKey<N>`.
//!
//! Owned and borrowed keys both hash and compare as `[&str; N]`, which is
//! how `[S; N]` hashes for any `S` that hashes as its `str` (`String`,
//! `CompactString`).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// `N` strings, however they are held.
pub trait StrKey<const N: usize> {
    fn strs(&self) -> [&str; N];
}

impl<S: AsRef<str>, const N: usize> StrKey<N> for [S; N] {
    fn strs(&self) -> [&str; N] {
        self.each_ref().map(AsRef::as_ref)
    }
}

impl<'a, S: AsRef<str> + 'a, const N: usize> Borrow<dyn StrKey<N> + 'a> for [S; N] {
    fn borrow(&self) -> &(dyn StrKey<N> + 'a) {
        self
    }
}

impl<const N: usize> Hash for dyn StrKey<N> + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.strs().hash(state);
    }
}

impl<const N: usize> PartialEq for dyn StrKey<N> + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.strs() == other.strs()
    }
}

impl<const N: usize> Eq for dyn StrKey<N> + '_ {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::hash::BuildHasher;

    use super::*;

    type Compact = smartstring::alias::CompactString;

    /// Else a borrowed key would never find its owned one.
    #[test]
    fn borrowed_keys_hash_and_compare_as_the_owned_ones() {
        let hasher = rustc_hash::FxBuildHasher;
        for key in [
            ["", "a"],
            ["ab", ""],
            ["keyspace", "a-target-name-longer-than-23-bytes"],
        ] {
            let borrowed: &dyn StrKey<2> = &key;
            let owned = key.map(String::from);
            let compact = key.map(Compact::from);
            assert_eq!(hasher.hash_one(&owned), hasher.hash_one(borrowed), "{key:?}");
            assert_eq!(hasher.hash_one(&compact), hasher.hash_one(borrowed), "{key:?}");
            let owned_as_key: &dyn StrKey<2> = owned.borrow();
            assert!(owned_as_key == borrowed);
        }
    }

    /// Found exactly where the owned key is, and nowhere else: `["a", "b"]`
    /// is not `["ab", ""]`.
    #[test]
    fn a_map_of_owned_keys_is_searched_with_borrowed_ones() {
        let keys = [["a", "b"], ["ab", ""], ["", "ab"], ["a", ""]];
        let map: HashMap<[String; 2], usize> = keys.iter().enumerate().map(|(i, k)| (k.map(String::from), i)).collect();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(map.get(key as &dyn StrKey<2>), Some(&i), "{key:?}");
        }
        assert_eq!(map.get(&["b", "a"] as &dyn StrKey<2>), None);
    }
}
