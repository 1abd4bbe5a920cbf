//! Reading Server-Sent Events (the `text/event-stream` format): lines in, whole events out.

/// One event: its `event:` name (`message` when none was given), `id:` and `data:` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

/// Collects the fields of the event being read; a blank line completes it.
#[derive(Default)]
pub struct Parser {
    name: Option<String>,
    id: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Takes one line (without its line break); returns the event a blank line completes.
    pub fn line(&mut self, line: &str) -> Option<Event> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let data = self.data.take();
            let name = self.name.take();
            let id = self.id.take();
            return data.map(|data| Event {
                name: name.unwrap_or_else(|| "message".into()),
                id,
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = Some(value.to_owned()),
            "id" => self.id = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Event> {
        let mut parser = Parser::default();
        text.split('\n').filter_map(|line| parser.line(line)).collect()
    }

    #[test]
    fn reads_events_and_skips_comments() {
        let events =
            parse("retry: 1000\n\n: keepalive\n\nevent: output\nid: 4\ndata: {\"a\":1}\n\ndata: x\ndata: y\r\n\n");
        assert_eq!(
            events,
            vec![
                Event {
                    name: "output".into(),
                    id: Some("4".into()),
                    data: "{\"a\":1}".into()
                },
                Event {
                    name: "message".into(),
                    id: None,
                    data: "x\ny".into()
                },
            ]
        );
    }
}
