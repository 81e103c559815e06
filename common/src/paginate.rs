//! Following `NextToken` pages, once for every paged AWS call: ask with the token the
//! last page gave until a page gives none. A page that hands back the token it was asked
//! with ends the walk too (CloudWatch Logs does this at the end of a stream), so a walk
//! can never spin on one page.

/// One page: its items and the token of the next page, if any.
pub type Page<T> = (Vec<T>, Option<String>);

/// Calls `fetch` with each page's token (first `start`), giving each page's items to
/// `take`; returns the token a further walk would start from (None: the end).
pub async fn for_each_page<T, E>(
    start: Option<String>,
    mut fetch: impl AsyncFnMut(Option<String>) -> Result<Page<T>, E>,
    mut take: impl FnMut(Vec<T>) -> Result<(), E>,
) -> Result<Option<String>, E> {
    let mut token = start;
    loop {
        let asked = token.clone();
        let (items, next) = fetch(token).await?;
        take(items)?;
        match next {
            Some(next) if asked.as_ref() != Some(&next) => token = Some(next),
            _ => return Ok(None),
        }
    }
}

/// Every item of every page, in order.
pub async fn all_pages<T, E>(
    fetch: impl AsyncFnMut(Option<String>) -> Result<Page<T>, E>,
) -> Result<Vec<T>, E> {
    let mut all = Vec::new();
    for_each_page(None, fetch, |items| {
        all.extend(items);
        Ok(())
    })
    .await?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_followed_in_order_until_there_is_no_token() {
        let mut asked = Vec::new();
        let items: Result<Vec<u32>, ()> = all_pages(async |token: Option<String>| {
            asked.push(token.clone());
            Ok(match token.as_deref() {
                None => (vec![1, 2], Some("b".to_owned())),
                Some("b") => (vec![3], Some("c".to_owned())),
                _ => (vec![4], None),
            })
        })
        .await;
        assert_eq!(items, Ok(vec![1, 2, 3, 4]));
        assert_eq!(asked, [None, Some("b".to_owned()), Some("c".to_owned())]);
    }

    #[tokio::test]
    async fn a_repeated_token_ends_the_walk_and_errors_stop_it() {
        let mut calls = 0;
        let items: Result<Vec<u32>, ()> = all_pages(async |_token: Option<String>| {
            calls += 1;
            Ok((vec![calls], Some("same".to_owned())))
        })
        .await;
        assert_eq!(items, Ok(vec![1, 2]));
        let failed: Result<Vec<u32>, &str> =
            all_pages(async |_token: Option<String>| Err("denied")).await;
        assert_eq!(failed, Err("denied"));
    }
}
