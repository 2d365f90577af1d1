//! The reference server's threads and messages (PROTOCOL.md section 6): kept
//! in memory per user, with isolation enforced the way the platform does it:
//! another user's thread is 403, an unknown one 404.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

/// One stored message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: String,
    pub role: &'static str,
    pub content: String,
    pub user_id: String,
    pub created_at: String,
}

impl StoredMessage {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "user_id": self.user_id,
            "created_at": self.created_at,
        })
    }
}

#[derive(Debug, Clone)]
struct Thread {
    id: String,
    owner: String,
    title: String,
    metadata: Value,
    created_at: String,
    updated_at: String,
    messages: Vec<StoredMessage>,
}

impl Thread {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": self.metadata,
            "message_count": self.messages.len(),
        })
    }
}

/// Why a thread cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No such thread (404).
    NotFound,
    /// Another user's thread (403).
    Forbidden,
}

#[derive(Default)]
struct Inner {
    threads: HashMap<String, Thread>,
    /// Thread ids per owner, oldest first.
    by_user: HashMap<String, Vec<String>>,
    seq: u64,
}

/// Every thread of every user.
#[derive(Default)]
pub struct Store(Mutex<Inner>);

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a thread for `user` (`id` None: the server picks one).
    pub fn create(
        &self,
        user: &str,
        id: Option<&str>,
        title: Option<&str>,
        metadata: Value,
    ) -> Value {
        let mut g = self.lock();
        g.seq += 1;
        let id = id.map_or_else(|| format!("th-{:06}", g.seq), str::to_string);
        let t = Thread {
            id: id.clone(),
            owner: user.to_string(),
            title: title.map_or_else(|| format!("Thread {}", g.seq), str::to_string),
            metadata,
            created_at: now(),
            updated_at: now(),
            messages: Vec::new(),
        };
        let out = t.to_json();
        g.threads.insert(id.clone(), t);
        g.by_user.entry(user.to_string()).or_default().push(id);
        out
    }

    fn check<'a>(g: &'a Inner, user: &str, id: &str) -> Result<&'a Thread, Denied> {
        match g.threads.get(id) {
            None => Err(Denied::NotFound),
            Some(t) if t.owner != user => Err(Denied::Forbidden),
            Some(t) => Ok(t),
        }
    }

    pub fn get(&self, user: &str, id: &str) -> Result<Value, Denied> {
        let g = self.lock();
        Store::check(&g, user, id).map(Thread::to_json)
    }

    /// `PUT`: a new title and/or metadata for the user's own thread.
    pub fn update(
        &self,
        user: &str,
        id: &str,
        title: Option<&str>,
        metadata: Option<Value>,
    ) -> Result<Value, Denied> {
        let mut g = self.lock();
        Store::check(&g, user, id)?;
        let t = g.threads.get_mut(id).expect("checked");
        if let Some(title) = title {
            t.title = title.to_string();
        }
        if let Some(m) = metadata {
            t.metadata = m;
        }
        t.updated_at = now();
        Ok(t.to_json())
    }

    /// `DELETE`: removes the user's own thread and its messages.
    pub fn delete(&self, user: &str, id: &str) -> Result<(), Denied> {
        let mut g = self.lock();
        Store::check(&g, user, id)?;
        g.threads.remove(id);
        if let Some(ids) = g.by_user.get_mut(user) {
            ids.retain(|t| t != id);
        }
        Ok(())
    }

    /// The user's threads, newest first, paged.
    pub fn list(&self, user: &str, limit: usize, offset: usize) -> Value {
        let g = self.lock();
        let ids = g.by_user.get(user).cloned().unwrap_or_default();
        let items: Vec<Value> = ids
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .filter_map(|id| g.threads.get(id).map(Thread::to_json))
            .collect();
        Value::Array(items)
    }

    /// A thread's messages, oldest first, paged, with the total.
    pub fn messages(
        &self,
        user: &str,
        id: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<StoredMessage>, usize), Denied> {
        let g = self.lock();
        let t = Store::check(&g, user, id)?;
        Ok((
            t.messages
                .iter()
                .skip(offset)
                .take(limit)
                .cloned()
                .collect(),
            t.messages.len(),
        ))
    }

    /// Appends a message to the user's thread, creating the thread when the id
    /// is new (a run may name a thread the client made up). Refused for
    /// another user's thread.
    pub fn append(
        &self,
        user: &str,
        id: &str,
        role: &'static str,
        content: &str,
    ) -> Result<Value, Denied> {
        let mut g = self.lock();
        match g.threads.get(id) {
            Some(t) if t.owner != user => return Err(Denied::Forbidden),
            Some(_) => {}
            None => {
                drop(g);
                self.create(user, Some(id), None, json!({}));
                g = self.lock();
            }
        }
        g.seq += 1;
        let seq = g.seq;
        let t = g.threads.get_mut(id).expect("the thread exists");
        let m = StoredMessage {
            id: format!("msg-{seq:08}"),
            role,
            content: content.to_string(),
            user_id: user.to_string(),
            created_at: now(),
        };
        t.updated_at = m.created_at.clone();
        t.messages.push(m.clone());
        Ok(m.to_json())
    }

    /// A message from a thread of some user other than `user`, for the
    /// leak fault (None when nobody else has written anything).
    pub fn foreign_message(&self, user: &str, pick: u64) -> Option<StoredMessage> {
        let g = self.lock();
        let mut others: Vec<&StoredMessage> = g
            .threads
            .values()
            .filter(|t| t.owner != user)
            .flat_map(|t| t.messages.iter())
            .collect();
        if others.is_empty() {
            return None;
        }
        others.sort_by(|a, b| a.id.cmp(&b.id));
        Some(others[(pick % others.len() as u64) as usize].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_isolated_per_user() {
        let s = Store::default();
        let t = s.create("alice", None, Some("plans"), json!({}));
        let id = t["id"].as_str().unwrap().to_string();
        s.append("alice", &id, "user", "hello").unwrap();
        assert_eq!(s.get("bob", &id), Err(Denied::Forbidden));
        assert_eq!(s.get("bob", "th-nope"), Err(Denied::NotFound));
        assert_eq!(
            s.messages("bob", &id, 10, 0).unwrap_err(),
            Denied::Forbidden
        );
        assert_eq!(
            s.append("bob", &id, "user", "mine now"),
            Err(Denied::Forbidden)
        );
        let (msgs, total) = s.messages("alice", &id, 10, 0).unwrap();
        assert_eq!((msgs.len(), total), (1, 1));
        assert_eq!(msgs[0].content, "hello");
        assert_eq!(s.list("bob", 10, 0), json!([]));
        assert_eq!(s.list("alice", 10, 0)[0]["message_count"], 1);
        // A run naming a new thread creates it for its user.
        s.append("bob", "bob-own", "user", "hi").unwrap();
        assert_eq!(s.get("alice", "bob-own"), Err(Denied::Forbidden));
        assert_eq!(s.foreign_message("alice", 0).unwrap().user_id, "bob");
    }
}
