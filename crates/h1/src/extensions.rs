//! Values attached to a request by the code that handled it before the handler: an
//! authentication layer's identity, a request id, a database handle chosen per tenant.
//!
//! One value per type, as in `http::Extensions`. Empty extensions cost one pointer, so a
//! request nobody decorates (the plaintext path) allocates nothing for them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// A map from type to one value of that type.
#[derive(Clone, Default)]
pub struct Extensions {
    // Arc, not Box: a `Request` is `Clone`, and the values need not be. The map is boxed
    // so that every request pays one pointer, not a map's 48 bytes, for what few use.
    #[allow(clippy::box_collection)]
    map: Option<Box<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Extensions {
    /// Store `value`, returning whether a value of that type was replaced.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> bool {
        self.map
            .get_or_insert_with(Default::default)
            .insert(TypeId::of::<T>(), Arc::new(value))
            .is_some()
    }

    /// The value of type `T`, if one was stored.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map
            .as_ref()?
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref())
    }

    /// Remove the value of type `T`; whether there was one.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> bool {
        self.map
            .as_mut()
            .is_some_and(|m| m.remove(&TypeId::of::<T>()).is_some())
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.as_ref().is_none_or(|m| m.is_empty())
    }

    /// Drop every value (and the map): what a recycled request's box is emptied with, in a
    /// branch rather than a call when there is nothing, as on nearly every request.
    pub(crate) fn clear(&mut self) {
        if self.map.is_some() {
            self.map = None;
        }
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.as_ref().map_or(0, |m| m.len());
        f.debug_struct("Extensions").field("len", &n).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type() {
        #[derive(Debug, PartialEq)]
        struct User(&'static str);
        let mut ext = Extensions::default();
        assert!(ext.is_empty() && ext.get::<User>().is_none());
        assert!(!ext.insert(User("ann")));
        assert!(ext.insert(User("bob")));
        ext.insert(7u32);
        assert_eq!(ext.get::<User>(), Some(&User("bob")));
        assert_eq!(ext.clone().get::<u32>(), Some(&7));
        assert!(ext.remove::<User>() && !ext.remove::<User>());
        assert_eq!(
            std::mem::size_of::<Extensions>(),
            std::mem::size_of::<usize>()
        );
    }
}
