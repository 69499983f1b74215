//! Stable error codes: the strings a user can search for, one enum per surface (the client
//! gRPC API, replication links, the console). [`stable_codes!`] declares such an enum from
//! one list, so its `ALL` can never miss a code; docs/errors.md is checked against the
//! `ALL` of every surface by a test (console-api's `tests/error_codes.rs`). Other enums
//! whose names are a contract (a topic's message type) are declared the same way.

/// Declares `enum $name` with `as_str`, `parse`, `ALL` and `Display` from one list of
/// `Variant => "text"` (each with its doc comment).
#[macro_export]
macro_rules! stable_codes {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The code as users see it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The code named `text`, if it is one of these.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.as_str() == text)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    stable_codes! {
        enum Example {
            /// One.
            One => "one",
            Two => "two",
        }
    }

    #[test]
    fn all_lists_every_code_and_parse_inverts_as_str() {
        assert_eq!(Example::ALL, &[Example::One, Example::Two]);
        for code in Example::ALL {
            assert_eq!(Example::parse(code.as_str()), Some(*code));
        }
        assert_eq!(Example::parse("three"), None);
        assert_eq!(Example::Two.to_string(), "two");
    }
}
