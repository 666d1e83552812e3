//! Requests are JSON objects. serde's derive also builds a struct from a
//! JSON array of its fields in order (`{"code": "x"}` as `["x"]`), which the
//! OpenAPI document does not allow and no client means; `object_only!`
//! gives a type `Deserialize` that takes a map and nothing else, and keeps
//! the derived field handling (`#[serde(remote = "Self")]` turns the derive
//! into inherent functions that these impls call), so field paths and
//! unknown-field errors are unchanged.

macro_rules! object_only {
    ($t:ty, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                struct Object;

                impl<'de> serde::de::Visitor<'de> for Object {
                    type Value = $t;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<$t, A::Error> {
                        <$t>::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    }
                }

                de.deserialize_map(Object)
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$t>::serialize(self, s)
            }
        }
    };
}
