//! The IDL corpus (fixtures/thrift/corpus/ in baseplate's repository):
//! every file generates and builds (through build.rs), and for every
//! service the sync processor (Apache's) and the async one (baseplate's)
//! answer the same bytes for the same calls: results, declared exceptions
//! of each kind, undeclared errors, inherited methods and one-way calls.
//!
//! Calls are made with the generated sync clients over a loopback that
//! hands each call to the sync processor; each call and its reply are
//! then given to the async processor, and the replies compared.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::rc::Rc;

use baseplate::server::thrift::{Protocol, ThriftRequest, ThriftResponse};
use baseplate::thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use baseplate::thrift::server::TProcessor;
use baseplate::thrift::{self, OrderedFloat};
use baseplate::tower::ServiceExt;
use baseplate::BoxError;

mod services {
    include!(concat!(env!("OUT_DIR"), "/services.rs"));
}
mod a {
    include!(concat!(env!("OUT_DIR"), "/a.rs"));
}

use services::types::{
    Color, Containers, Invalid, Keywords, Mask, NotFound, Primitives, Requiredness, Shape,
};

/// Calls and the sync processor's replies, in order.
type Log = Rc<RefCell<Vec<(Vec<u8>, Vec<u8>)>>>;

/// The client's side of a loopback to a sync processor.
struct Loopback {
    pending: Rc<RefCell<Vec<u8>>>,
    replies: Rc<RefCell<VecDeque<u8>>>,
    log: Log,
    processor: Rc<dyn TProcessor>,
}

impl Loopback {
    fn new(processor: impl TProcessor + 'static) -> Loopback {
        Loopback {
            pending: Rc::default(),
            replies: Rc::default(),
            log: Rc::default(),
            processor: Rc::new(processor),
        }
    }

    /// Hands the call written so far to the processor.
    fn process_pending(&self) {
        let call = std::mem::take(&mut *self.pending.borrow_mut());
        if call.is_empty() {
            return;
        }
        let mut reply = Vec::new();
        let mut input = TBinaryInputProtocol::new(&call[..], true);
        let mut output = TBinaryOutputProtocol::new(&mut reply, true);
        self.processor
            .process(&mut input, &mut output)
            .expect("the sync processor");
        self.replies.borrow_mut().extend(reply.iter().copied());
        self.log.borrow_mut().push((call, reply));
    }

    /// The protocols a generated client is made of: `Client::new(input, output)`.
    fn protocols(self: &Rc<Self>) -> (Input, Output) {
        (
            TBinaryInputProtocol::new(Reader(Rc::clone(self)), true),
            TBinaryOutputProtocol::new(Writer(Rc::clone(&self.pending)), true),
        )
    }
}

struct Reader(Rc<Loopback>);

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.replies.borrow().is_empty() {
            self.0.process_pending();
        }
        let mut replies = self.0.replies.borrow_mut();
        let n = buf.len().min(replies.len());
        for (slot, byte) in buf.iter_mut().zip(replies.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

struct Writer(Rc<RefCell<Vec<u8>>>);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Input = TBinaryInputProtocol<Reader>;
type Output = TBinaryOutputProtocol<Writer>;

/// Gives every logged call to `processor` and compares its reply with the
/// sync processor's, byte for byte.
fn assert_same_replies<S>(log: &Log, processor: S, expected_calls: usize)
where
    S: baseplate::tower::Service<ThriftRequest, Response = ThriftResponse, Error = BoxError>
        + Clone,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = log.borrow();
    assert_eq!(log.len(), expected_calls, "every call was made");
    for (index, (call, sync_reply)) in log.iter().enumerate() {
        let request = ThriftRequest::from_message(Protocol::Binary, call.clone()).unwrap();
        let method = request.method.to_string();
        let reply = runtime
            .block_on(processor.clone().oneshot(request))
            .unwrap_or_else(|e| panic!("call {index} ({method}): {e}"));
        assert_eq!(
            reply.message(),
            &sync_reply[..],
            "call {index} ({method}): the async reply differs from the sync one"
        );
    }
}

// --- The Store and Admin services: one behaviour, both handler kinds. ---

#[derive(Clone, Copy)]
struct Same;

fn area(shape: Shape, scale: OrderedFloat<f64>) -> thrift::Result<Shape> {
    if scale.0 < 0.0 {
        return Err(Invalid::new(vec!["negative scale".to_string()], None).into());
    }
    Ok(match shape {
        Shape::Radius(r) => Shape::Radius(OrderedFloat(r.0 * scale.0)),
        other => other,
    })
}

fn lookup(owner: i64, filter: BTreeMap<String, BTreeSet<Color>>) -> thrift::Result<Requiredness> {
    match owner {
        0 => Err(NotFound::new(0, "no owner zero".to_string()).into()),
        o if o < 0 => Err(Invalid::new(vec![format!("owner {o}")], None).into()),
        o => Ok(Requiredness::new(
            format!("owner {o}"),
            None,
            "p".to_string(),
            filter.len() as i32,
            None,
        )),
    }
}

fn keywords(match_: String, ref_: i32) -> thrift::Result<Keywords> {
    if match_ == "undeclared" {
        return Err(thrift::Error::User("an undeclared error".into()));
    }
    let keywords = Keywords {
        type_: Some(match_.clone()),
        match_: Some(ref_),
        fn_: Some(ref_ % 2 == 0),
        impl_: Some(vec![match_.clone(), match_]),
        where_: Some(i64::from(ref_) * 3),
        self_: None,
        loop_: Some(-ref_),
    };
    if ref_ < 0 {
        return Err(Invalid::new(vec!["negative".to_string()], keywords).into());
    }
    Ok(keywords)
}

fn bytes(mut data: Vec<u8>, tiny: i8, small: i16, real: OrderedFloat<f64>) -> Vec<u8> {
    data.push(tiny as u8);
    data.extend(small.to_be_bytes());
    data.extend(real.0.to_be_bytes());
    data
}

fn reset(hard: bool) -> thrift::Result<bool> {
    if hard {
        Err(NotFound::new(None, "hard reset".to_string()).into())
    } else {
        Ok(true)
    }
}

impl services::StoreSyncHandler for Same {
    fn handle_echo_primitives(&self, value: Primitives) -> thrift::Result<Primitives> {
        Ok(value)
    }
    fn handle_echo_containers(&self, value: Containers) -> thrift::Result<Containers> {
        Ok(value)
    }
    fn handle_area(&self, shape: Shape, scale: OrderedFloat<f64>) -> thrift::Result<Shape> {
        area(shape, scale)
    }
    fn handle_lookup(
        &self,
        owner: i64,
        filter: BTreeMap<String, BTreeSet<Color>>,
    ) -> thrift::Result<Requiredness> {
        lookup(owner, filter)
    }
    fn handle_keywords(&self, match_: String, ref_: i32) -> thrift::Result<Keywords> {
        keywords(match_, ref_)
    }
    fn handle_bytes(
        &self,
        data: Vec<u8>,
        tiny: i8,
        small: i16,
        real: OrderedFloat<f64>,
    ) -> thrift::Result<Vec<u8>> {
        Ok(bytes(data, tiny, small, real))
    }
    fn handle_forget(&self, _user: i64) -> thrift::Result<()> {
        Ok(())
    }
    fn handle_nothing(&self) -> thrift::Result<()> {
        Ok(())
    }
}

impl services::AdminSyncHandler for Same {
    fn handle_reset(&self, hard: bool) -> thrift::Result<bool> {
        reset(hard)
    }
}

impl services::AdminAsyncHandler for Same {
    async fn handle_echo_primitives(&self, value: Primitives) -> thrift::Result<Primitives> {
        Ok(value)
    }
    async fn handle_echo_containers(&self, value: Containers) -> thrift::Result<Containers> {
        Ok(value)
    }
    // The shared sync code's thrift::Error becomes the typed error: a
    // declared exception in Error::User is found and made its variant.
    async fn handle_area(
        &self,
        shape: Shape,
        scale: OrderedFloat<f64>,
    ) -> Result<Shape, services::StoreAreaError> {
        area(shape, scale).map_err(Into::into)
    }
    async fn handle_lookup(
        &self,
        owner: i64,
        filter: BTreeMap<String, BTreeSet<Color>>,
    ) -> Result<Requiredness, services::StoreLookupError> {
        lookup(owner, filter).map_err(Into::into)
    }
    async fn handle_keywords(
        &self,
        match_: String,
        ref_: i32,
    ) -> Result<Keywords, services::StoreKeywordsError> {
        keywords(match_, ref_).map_err(Into::into)
    }
    async fn handle_bytes(
        &self,
        data: Vec<u8>,
        tiny: i8,
        small: i16,
        real: OrderedFloat<f64>,
    ) -> thrift::Result<Vec<u8>> {
        Ok(bytes(data, tiny, small, real))
    }
    async fn handle_forget(&self, _user: i64) -> thrift::Result<()> {
        Ok(())
    }
    async fn handle_nothing(&self) -> thrift::Result<()> {
        Ok(())
    }
    async fn handle_reset(&self, hard: bool) -> Result<bool, services::AdminResetError> {
        reset(hard).map_err(Into::into)
    }
}

#[test]
fn store_and_admin_answer_the_same_bytes_sync_and_async() {
    use services::{AdminSyncClient, TAdminSyncClient, TStoreSyncClient};

    let loopback = Rc::new(Loopback::new(services::AdminSyncProcessor::new(Same)));
    let (input, output) = loopback.protocols();
    let mut client = AdminSyncClient::new(input, output);
    let primitives = Primitives::new(
        false,
        -1,
        8,
        -16,
        32,
        i64::MIN,
        OrderedFloat(1e300),
        "é中".to_string(),
        vec![0, 255],
    );
    assert_eq!(
        client.echo_primitives(primitives.clone()).unwrap(),
        primitives
    );
    assert_eq!(
        client.echo_primitives(Primitives::default()).unwrap(),
        Primitives::default()
    );
    let containers = Containers {
        grid: Some(vec![vec![1, 2], vec![], vec![-3]]),
        tags: Some(BTreeSet::from(["x".to_string(), "y".to_string()])),
        nested: Some(BTreeMap::from([(
            "k".to_string(),
            vec![
                BTreeMap::from([(7, BTreeSet::from(["s".to_string()]))]),
                BTreeMap::new(),
            ],
        )])),
        by_color: Some(BTreeMap::from([
            (Color::BLUE, primitives.clone()),
            (Color::RED, Primitives::default()),
        ])),
        blobs: Some(vec![vec![], vec![1, 2, 3]]),
        owners: Some(BTreeMap::from([(42, vec![Color::GREEN, Color::RED])])),
        masks: Some(vec![Mask::LOW, Mask::HIGH, Mask::NONE]),
    };
    assert_eq!(
        client.echo_containers(containers.clone()).unwrap(),
        containers
    );
    assert_eq!(
        client
            .area(Shape::Radius(OrderedFloat(2.0)), OrderedFloat(1.5))
            .unwrap(),
        Shape::Radius(OrderedFloat(3.0))
    );
    assert_eq!(
        client
            .area(Shape::Other(primitives.clone()), OrderedFloat(1.0))
            .unwrap(),
        Shape::Other(primitives)
    );
    assert!(
        client
            .area(Shape::Polygon(vec![OrderedFloat(0.5)]), OrderedFloat(-1.0))
            .is_err(),
        "declared Invalid"
    );
    let filter = BTreeMap::from([("c".to_string(), BTreeSet::from([Color::RED]))]);
    assert_eq!(client.lookup(5, filter.clone()).unwrap().count, 1);
    assert!(
        client.lookup(0, filter.clone()).is_err(),
        "declared NotFound (first of two)"
    );
    assert!(
        client.lookup(-5, filter).is_err(),
        "declared Invalid (second of two)"
    );
    assert_eq!(
        client.keywords("m".to_string(), 4).unwrap().where_,
        Some(12)
    );
    assert!(
        client.keywords("m".to_string(), -4).is_err(),
        "declared Invalid holding keywords"
    );
    assert!(
        client.keywords("undeclared".to_string(), 1).is_err(),
        "an undeclared error"
    );
    assert_eq!(
        client
            .bytes(vec![9], -1, 258, OrderedFloat(0.25))
            .unwrap()
            .len(),
        12
    );
    client.forget(7).unwrap();
    loopback.process_pending();
    client.nothing().unwrap();
    assert!(client.reset(false).unwrap(), "Admin's own method");
    assert!(client.reset(true).is_err(), "Admin's declared NotFound");

    assert_same_replies(&loopback.log, services::AdminAsyncProcessor::new(Same), 17);
}

// --- The chain: A extends b.B extends c.C extends d.D, four files. ---

use a::c::{Item, TCSyncClient};

fn leaf(value: i64) -> a::d::Leaf {
    a::d::Leaf::new(value)
}

fn item(label: String) -> thrift::Result<Item> {
    if label == "gone" {
        return Err(a::d::Gone::new(label).into());
    }
    Ok(Item::new(leaf(label.len() as i64), label))
}

fn items(count: i32) -> Vec<Item> {
    (0..count.clamp(0, 10))
        .map(|i| Item::new(leaf(i64::from(i)), format!("item {i}")))
        .collect()
}

fn swap(pair: a::b::Pair) -> a::b::Pair {
    a::b::Pair {
        left: pair.right,
        right: pair.left,
    }
}

impl a::d::DSyncHandler for Same {
    fn handle_leaf(&self, value: i64) -> thrift::Result<a::d::Leaf> {
        Ok(leaf(value))
    }
}
impl a::c::CSyncHandler for Same {
    fn handle_item(&self, label: String) -> thrift::Result<Item> {
        item(label)
    }
}
impl a::b::BSyncHandler for Same {
    fn handle_items(&self, count: i32) -> thrift::Result<Vec<Item>> {
        Ok(items(count))
    }
}
impl a::ASyncHandler for Same {
    fn handle_swap(&self, pair: a::b::Pair) -> thrift::Result<a::b::Pair> {
        Ok(swap(pair))
    }
}
impl a::AAsyncHandler for Same {
    async fn handle_leaf(&self, value: i64) -> thrift::Result<a::d::Leaf> {
        Ok(leaf(value))
    }
    async fn handle_item(&self, label: String) -> Result<Item, a::c::CItemError> {
        item(label).map_err(Into::into)
    }
    async fn handle_items(&self, count: i32) -> thrift::Result<Vec<Item>> {
        Ok(items(count))
    }
    async fn handle_swap(&self, pair: a::b::Pair) -> thrift::Result<a::b::Pair> {
        Ok(swap(pair))
    }
}

#[test]
fn a_four_file_chain_answers_the_same_bytes_sync_and_async() {
    use a::b::TBSyncClient;
    use a::d::TDSyncClient;
    use a::{ASyncClient, TASyncClient};

    let loopback = Rc::new(Loopback::new(a::ASyncProcessor::new(Same)));
    let (input, output) = loopback.protocols();
    let mut client = ASyncClient::new(input, output);
    assert_eq!(
        client.leaf(-3).unwrap().value,
        Some(-3),
        "from d, three files down"
    );
    assert_eq!(
        client
            .item("abc".to_string())
            .unwrap()
            .leaf
            .and_then(|l| l.value),
        Some(3)
    );
    assert!(
        client.item("gone".to_string()).is_err(),
        "d's exception, declared in c"
    );
    assert_eq!(client.items(4).unwrap().len(), 4);
    let pair = a::b::Pair::new(
        Item::new(leaf(1), "l".to_string()),
        Item::new(leaf(2), "r".to_string()),
    );
    assert_eq!(
        client
            .swap(pair)
            .unwrap()
            .left
            .and_then(|i| i.label)
            .as_deref(),
        Some("r")
    );

    assert_same_replies(&loopback.log, a::AAsyncProcessor::new(Same), 5);
}
