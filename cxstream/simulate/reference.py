"""Static tables the simulator draws from: cities, name parts, merchants, texts.

Everything personal made from these is fake on purpose: names are random pairings of common name
parts, e-mail domains are the reserved ``example.*`` domains (RFC 2606), Western phone numbers
come from ranges reserved for fiction (Ofcom 07700 900xxx, NANP 555-01xx), Chinese national ids
carry a deliberately wrong check digit so they can never be a real person's number, and IP
addresses are private (RFC 1918) addresses.
"""

from __future__ import annotations

from typing import NamedTuple


class City(NamedTuple):
    #: small number of the city (the second octet of its simulated IP addresses)
    key: int
    name: str
    country: str
    lat: float
    lon: float
    #: 6-digit administrative code used in mainland national ids ("" outside the mainland)
    region_code: str
    #: relative share of the bank's customers living there (0 = only visited)
    residents: float


CITIES: tuple[City, ...] = (
    City(0, "Shanghai", "CN", 31.2304, 121.4737, "310115", 14.0),
    City(1, "Beijing", "CN", 39.9042, 116.4074, "110105", 13.0),
    City(2, "Shenzhen", "CN", 22.5431, 114.0579, "440305", 10.0),
    City(3, "Guangzhou", "CN", 23.1291, 113.2644, "440106", 9.0),
    City(4, "Chengdu", "CN", 30.5728, 104.0668, "510107", 7.0),
    City(5, "Hangzhou", "CN", 30.2741, 120.1551, "330106", 6.0),
    City(6, "Wuhan", "CN", 30.5928, 114.3055, "420106", 5.0),
    City(7, "Nanjing", "CN", 32.0603, 118.7969, "320106", 5.0),
    City(8, "Xi'an", "CN", 34.3416, 108.9398, "610113", 4.0),
    City(9, "Chongqing", "CN", 29.5630, 106.5516, "500103", 5.0),
    City(10, "Tianjin", "CN", 39.3434, 117.3616, "120101", 4.0),
    City(11, "Suzhou", "CN", 31.2989, 120.5853, "320508", 4.0),
    City(12, "Hong Kong", "HK", 22.3193, 114.1694, "", 3.0),
    City(13, "Singapore", "SG", 1.3521, 103.8198, "", 0.0),
    City(14, "Tokyo", "JP", 35.6762, 139.6503, "", 0.0),
    City(15, "London", "GB", 51.5074, -0.1278, "", 0.0),
    City(16, "New York", "US", 40.7128, -74.0060, "", 0.0),
    City(17, "Frankfurt", "DE", 50.1109, 8.6821, "", 0.0),
    City(18, "Sydney", "AU", -33.8688, 151.2093, "", 0.0),
    City(19, "Sao Paulo", "BR", -23.5505, -46.6333, "", 0.0),
    City(20, "Lagos", "NG", 6.5244, 3.3792, "", 0.0),
    City(21, "Moscow", "RU", 55.7558, 37.6173, "", 0.0),
)

HOME_CITIES = tuple(c for c in CITIES if c.residents > 0)
MAINLAND_CITIES = tuple(c for c in CITIES if c.region_code)
#: where attackers log in from in the injected scenarios (far from every home city)
FAR_CITIES = tuple(c for c in CITIES if c.key >= 15)

# (characters, pinyin)
CN_SURNAMES: tuple[tuple[str, str], ...] = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"),
    ("杨", "yang"), ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"),
    ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"), ("胡", "hu"),
    ("郭", "guo"), ("何", "he"), ("高", "gao"), ("林", "lin"), ("罗", "luo"),
    ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"), ("唐", "tang"),
    ("许", "xu"), ("韩", "han"), ("冯", "feng"), ("邓", "deng"), ("曹", "cao"),
)  # fmt: skip
CN_GIVEN: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"),
    ("丽", "li"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"),
    ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("涛", "tao"), ("明", "ming"),
    ("超", "chao"), ("秀", "xiu"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"),
    ("桂", "gui"), ("华", "hua"), ("建", "jian"), ("文", "wen"), ("玲", "ling"),
    ("婷", "ting"), ("雪", "xue"), ("晨", "chen"), ("宇", "yu"), ("浩", "hao"),
    ("欣", "xin"), ("怡", "yi"), ("子", "zi"), ("梓", "zi"), ("涵", "han"),
    ("博", "bo"), ("嘉", "jia"), ("琳", "lin"), ("思", "si"), ("睿", "rui"),
)  # fmt: skip
WESTERN_FIRST: tuple[str, ...] = (
    "James", "Olivia", "William", "Emma", "Lucas", "Sophie", "Henry", "Charlotte", "Daniel",
    "Amelia", "Thomas", "Isabella", "Oliver", "Mia", "Samuel", "Grace", "Leo", "Hannah",
    "Jack", "Chloe", "Max", "Laura", "Noah", "Anna", "David", "Julia", "Paul", "Elena",
)  # fmt: skip
WESTERN_LAST: tuple[str, ...] = (
    "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark", "Walker",
    "Hall", "Young", "King", "Wright", "Green", "Baker", "Adams", "Nelson", "Hill",
    "Campbell", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner", "Parker",
    "Muller", "Schmidt", "Dubois", "Martin",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
CN_MOBILE_PREFIXES = (
    "130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "155",
    "156", "157", "158", "159", "166", "176", "177", "180", "181", "185", "186", "187",
    "188", "189", "198", "199",
)  # fmt: skip

# (category, median amount in CNY, relative frequency in the population)
SPEND_CATEGORIES: tuple[tuple[str, float, float], ...] = (
    ("groceries", 120.0, 30.0),
    ("dining", 85.0, 22.0),
    ("transport", 28.0, 18.0),
    ("shopping", 320.0, 12.0),
    ("utilities", 240.0, 5.0),
    ("entertainment", 150.0, 5.0),
    ("health", 260.0, 3.0),
    ("travel", 2400.0, 3.0),
    ("education", 1800.0, 2.0),
)
MERCHANTS: dict[str, tuple[str, ...]] = {
    "groceries": ("FreshLeaf Market", "鲜果超市", "Daily Basket", "邻家便利"),
    "dining": ("Red Lantern Noodles", "老街火锅", "Harbour Cafe", "小笼包店"),
    "transport": ("Metro Card Top-up", "快行打车", "City Taxi Co", "High-speed Rail"),
    "shopping": ("Orchid Department Store", "优品生活", "TechHub Electronics", "Online Mall"),
    "utilities": ("City Power", "Water Services", "Mobile Carrier Bill", "Gas Utility"),
    "entertainment": ("Star Cinema", "Music Stream", "Game Store", "Theatre Box"),
    "health": ("Green Cross Pharmacy", "Family Clinic", "Dental Studio", "Health Store"),
    "travel": ("Sky Airways", "Grand Hotel", "Holiday Booking", "Rail Travel"),
    "education": ("Bright Tutoring", "Language School", "Book Hall", "Online Course"),
}

INFO_TOPICS = (
    "rates", "fees", "card_limits", "mortgage", "fx_rates", "branch_hours", "loan_terms",
    "fund_performance", "insurance_cover", "statement", "app_help", "security_tips",
)  # fmt: skip
SERVICE_TOPICS = (
    "card_block", "address_change", "limit_increase", "card_activation", "statement_copy",
    "password_help", "dispute", "standing_order",
)  # fmt: skip
SEARCH_QUERIES = (
    "mortgage rates", "信用卡 挂失", "exchange rate usd", "how to raise card limit",
    "定期存款 利率", "branch near me", "travel insurance", "fund returns 2026",
    "转账 限额", "cashback card", "personal loan calculator", "wallet currencies",
)  # fmt: skip
CHAT_OPENERS = (
    "Hi, my card was declined at a shop", "我想问一下信用卡的年费", "How do I change my address?",
    "转账一直显示处理中", "Can I increase my transfer limit?", "What are today's fx rates?",
    "我的账户被锁定了", "I lost my card, please block it",
)  # fmt: skip

FEEDBACK_CATEGORIES: dict[str, tuple[str, ...]] = {
    "app": ("app_bug", "fees", "card", "transfer"),
    "web": ("app_bug", "fees", "transfer", "information"),
    "social": ("fees", "information", "staff"),
    "chat": ("waiting_time", "card", "information"),
    "phone": ("waiting_time", "staff", "card", "fees"),
    "branch": ("waiting_time", "staff", "fees"),
    "email": ("fees", "card", "transfer", "fraud"),
    "survey": ("information", "staff", "app_bug"),
}
FEEDBACK_TEXTS: dict[str, tuple[str, ...]] = {
    "app_bug": ("The app crashes when I open statements", "转账页面一直加载不出来"),
    "fees": ("Why was I charged an annual fee?", "这笔手续费我不认可"),
    "card": ("My new card has not arrived", "卡片被无故冻结"),
    "transfer": ("My transfer has been pending for two days", "跨行转账没有到账"),
    "information": ("I could not find the deposit rates online", "网站上找不到网点营业时间"),
    "waiting_time": ("I waited 40 minutes on the hotline", "网点排队时间太长了"),
    "staff": ("The branch staff were unhelpful", "客服态度很好\uff0c谢谢"),
    "fraud": ("There is a payment I did not make", "有一笔不是我本人的交易"),
}
RESPONSE_NOTES = (
    "We have looked into this and corrected it.",
    "已为您处理\uff0c请查收短信通知。",
    "Thank you, the fee has been refunded.",
    "We need a copy of the receipt to continue.",
    "已转交相关部门跟进。",
)
SURVEY_COMMENTS = (
    "Very convenient app", "希望网点多开一些窗口", "Recommendations were not relevant",
    "客服回复很及时", "Security checks are reassuring", "Hard to find information on the site",
)  # fmt: skip

USER_AGENTS: dict[str, tuple[str, ...]] = {
    "ios": ("CXBank/8.4 (iPhone; iOS 18.1)", "CXBank/8.3 (iPhone; iOS 17.6)"),
    "android": ("CXBank/8.4 (Android 15; Pixel)", "CXBank/8.4 (Android 14; HUAWEI)"),
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Safari/605.1",
    ),
}
SCRIPT_AGENTS = ("python-requests/2.32.3", "curl/8.5.0", "Go-http-client/1.1")

STAFF_TEAMS: tuple[tuple[str, float], ...] = (
    ("customer_service", 0.4),
    ("branch", 0.3),
    ("risk_control", 0.1),
    ("it", 0.1),
    ("marketing", 0.1),
)

#: the frontend that publishes a channel's events (the ``source`` field)
CHANNEL_SOURCES: dict[str, str] = {
    "web": "web-banking",
    "app": "mobile-app",
    "social": "social-hub",
    "chat": "chat-platform",
    "phone": "ivr",
    "branch": "branch-crm",
    "atm": "atm-network",
    "email": "mail-intake",
    "survey": "survey-platform",
}
#: local currency of the cities card payments can happen in while travelling
COUNTRY_CURRENCY: dict[str, str] = {
    "CN": "CNY", "HK": "HKD", "SG": "SGD", "JP": "JPY", "GB": "GBP", "US": "USD",
    "DE": "EUR", "AU": "AUD", "BR": "BRL", "NG": "NGN", "RU": "RUB",
}  # fmt: skip
ERASURE_REASONS = ("Closing my account", "我已不再使用该银行的服务", None, None)
