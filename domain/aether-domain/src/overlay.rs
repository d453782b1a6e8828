//! Copy-on-write overlay resolution: a session tree is a stack of layers (top first), each
//! holding entries or whiteouts; the topmost mention of a path wins.

use std::collections::BTreeMap;

/// One layer's rows for a key range, sorted by key; `None` is a whiteout. `truncated` says the
/// layer has more rows after the last one returned.
#[derive(Debug, Clone)]
pub struct LayerPage<K, T> {
    pub rows: Vec<(K, Option<T>)>,
    pub truncated: bool,
}

/// Resolves one key from its mentions, top layer first.
pub fn resolve<T>(mentions: impl IntoIterator<Item = Option<T>>) -> Option<T> {
    mentions.into_iter().next().flatten()
}

/// Merges pages of several layers (top first) into the visible rows, in key order.
///
/// When a layer's page was truncated, keys after its last row are unknown for that layer, so the
/// result stops at the smallest such key; the second value is that key (the cursor to continue
/// after), or `None` when the merge covered everything.
pub fn merge_pages<K: Ord + Clone, T>(
    mut layers: Vec<LayerPage<K, T>>,
) -> (Vec<(K, T)>, Option<K>) {
    // One layer (a session never forked or checkpointed) needs no merging.
    if layers.len() == 1 {
        let layer = layers.pop().expect("one layer");
        let bound = if layer.truncated {
            layer.rows.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let visible = layer
            .rows
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        return (visible, bound);
    }
    let bound = layers
        .iter()
        .filter(|l| l.truncated)
        .filter_map(|l| l.rows.last().map(|(k, _)| k.clone()))
        .min();
    let mut winners: BTreeMap<K, Option<T>> = BTreeMap::new();
    for layer in layers {
        for (k, v) in layer.rows {
            if bound.as_ref().is_some_and(|b| &k > b) {
                break;
            }
            winners.entry(k).or_insert(v);
        }
    }
    let visible = winners
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    (visible, bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(layers: &[BTreeMap<u8, Option<u32>>]) -> Vec<(u8, u32)> {
        let mut out = BTreeMap::new();
        for layer in layers.iter().rev() {
            for (k, v) in layer {
                match v {
                    Some(v) => out.insert(*k, *v),
                    None => out.remove(k),
                };
            }
        }
        out.into_iter().collect()
    }

    #[test]
    fn top_layer_wins_and_whiteouts_hide() {
        let page = |rows: Vec<(u8, Option<u32>)>| LayerPage {
            rows,
            truncated: false,
        };
        let (rows, next) = merge_pages(vec![
            page(vec![(1, None), (2, Some(20))]),
            page(vec![(1, Some(1)), (3, Some(3))]),
        ]);
        assert_eq!(rows, vec![(2, 20), (3, 3)]);
        assert_eq!(next, None);
        assert_eq!(resolve(vec![None, Some(1)]), None);
        assert_eq!(resolve(vec![Some(2), Some(1)]), Some(2));
    }

    proptest! {
        /// Paging through merged layers with any page size yields exactly the naive overlay.
        #[test]
        fn paged_merge_equals_naive_model(
            layers in prop::collection::vec(prop::collection::btree_map(any::<u8>(), prop::option::of(any::<u32>()), 0..30), 1..5),
            page_size in 1usize..10,
        ) {
            let mut got = Vec::new();
            let mut after: Option<u8> = None;
            loop {
                let pages = layers.iter().map(|l| {
                    let rows: Vec<_> = l.iter().filter(|(k, _)| after.is_none_or(|a| **k > a)).map(|(k, v)| (*k, *v)).collect();
                    let truncated = rows.len() > page_size;
                    LayerPage { rows: rows.into_iter().take(page_size).collect(), truncated }
                }).collect();
                let (rows, next) = merge_pages(pages);
                got.extend(rows);
                match next { Some(k) => after = Some(k), None => break }
            }
            prop_assert_eq!(got, naive(&layers));
        }
    }
}
